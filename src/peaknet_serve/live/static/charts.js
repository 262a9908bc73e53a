// A tiny canvas chart library for the live page: line, bar, heat map, image with circles.
// No dependencies, so the page works on a beamline network without a CDN.
"use strict";

const Charts = (() => {
  const PAD = { left: 48, right: 10, top: 10, bottom: 24 };
  const AXIS = "#888";
  const FONT = "11px sans-serif";

  function frame(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = FONT;
    const w = canvas.width - PAD.left - PAD.right;
    const h = canvas.height - PAD.top - PAD.bottom;
    return { ctx, w, h };
  }

  function axes(ctx, w, h, xLabels, yMax, yFormat) {
    ctx.strokeStyle = AXIS;
    ctx.fillStyle = AXIS;
    ctx.beginPath();
    ctx.moveTo(PAD.left, PAD.top);
    ctx.lineTo(PAD.left, PAD.top + h);
    ctx.lineTo(PAD.left + w, PAD.top + h);
    ctx.stroke();
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i++) {
      const y = PAD.top + h - (h * i) / 4;
      ctx.fillText(yFormat((yMax * i) / 4), PAD.left - 4, y + 4);
    }
    ctx.textAlign = "center";
    for (const [fraction, text] of xLabels) {
      ctx.fillText(text, PAD.left + fraction * w, PAD.top + h + 16);
    }
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 5, 10]) if (m * p >= value) return m * p;
    return 10 * p;
  }

  // xs, ys: numbers (null ys leave a gap); options: {color, yMax, yFormat, xFormat}.
  function line(canvas, xs, ys, options = {}) {
    const { ctx, w, h } = frame(canvas);
    const values = ys.filter((v) => v !== null);
    const yMax = options.yMax ?? niceMax(Math.max(0, ...values));
    const x0 = xs.length ? xs[0] : 0;
    const x1 = xs.length > 1 ? xs[xs.length - 1] : x0 + 1;
    const fmt = options.xFormat ?? ((v) => v.toFixed(0));
    axes(ctx, w, h, [[0, fmt(x0)], [1, fmt(x1)]], yMax, options.yFormat ?? ((v) => v.toFixed(1)));
    ctx.strokeStyle = options.color ?? "#4fc3f7";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let pen = false;
    xs.forEach((x, i) => {
      if (ys[i] === null) { pen = false; return; }
      const px = PAD.left + ((x - x0) / (x1 - x0 || 1)) * w;
      const py = PAD.top + h - (Math.min(ys[i], yMax) / yMax) * h;
      if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      pen = true;
    });
    ctx.stroke();
    canvas.dataset.points = String(values.length);
  }

  // counts[i]: the bar of bin i, which starts at i * binWidth.
  function bars(canvas, counts, binWidth, options = {}) {
    const { ctx, w, h } = frame(canvas);
    const yMax = niceMax(Math.max(0, ...counts));
    const n = Math.max(counts.length, 1);
    axes(ctx, w, h, [[0, "0"], [1, String(n * binWidth)]], yMax, (v) => v.toFixed(0));
    ctx.fillStyle = options.color ?? "#81c784";
    counts.forEach((c, i) => {
      const bh = (c / yMax) * h;
      ctx.fillRect(PAD.left + (i * w) / n + 1, PAD.top + h - bh, w / n - 2, bh);
    });
    canvas.dataset.bars = String(counts.filter((c) => c > 0).length);
  }

  // grid[i][j]: counts for x bin i and y bin j, shown on a log colour scale.
  function heatmap(canvas, grid, xMax, yMax, options = {}) {
    const { ctx, w, h } = frame(canvas);
    axes(ctx, w, h, [[0, "0"], [1, xMax.toFixed(0)]], yMax, options.yFormat ?? ((v) => v.toFixed(1)));
    const nx = grid.length;
    const ny = nx ? grid[0].length : 0;
    const top = Math.log1p(Math.max(0, ...grid.flat()));
    let filled = 0;
    for (let i = 0; i < nx; i++) {
      for (let j = 0; j < ny; j++) {
        if (!grid[i][j]) continue;
        filled++;
        const t = Math.log1p(grid[i][j]) / (top || 1);
        ctx.fillStyle = `hsl(${240 - 240 * t}, 90%, ${25 + 35 * t}%)`;
        ctx.fillRect(PAD.left + (i * w) / nx, PAD.top + h - ((j + 1) * h) / ny,
                     Math.ceil(w / nx), Math.ceil(h / ny));
      }
    }
    canvas.dataset.cells = String(filled);
  }

  // image: {png (base64), width, height, x[], y[]}: the picture, then a circle per peak.
  function peaksImage(canvas, image, onDrawn) {
    const picture = new Image();
    picture.onload = () => {
      const ctx = canvas.getContext("2d");
      const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(picture, 0, 0, image.width * scale, image.height * scale);
      ctx.strokeStyle = "#ff5252";
      ctx.lineWidth = 1.5;
      image.x.forEach((x, i) => {
        ctx.beginPath();
        ctx.arc((x + 0.5) * scale, (image.y[i] + 0.5) * scale, Math.max(4, 3 * scale), 0, 2 * Math.PI);
        ctx.stroke();
      });
      canvas.dataset.circles = String(image.x.length);
      if (onDrawn) onDrawn();
    };
    picture.src = "data:image/png;base64," + image.png;
  }

  return { line, bars, heatmap, peaksImage };
})();
