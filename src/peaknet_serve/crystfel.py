"""Run the real CrystFEL beside the service: pattern_sim makes frames, indexamajig judges peaks.

Tests and benchmarks hand what the service writes to CrystFEL 0.11.1 (``indexamajig``) and make
realistic frames with ``pattern_sim`` (0.10.2), both built by ``../shared/crystfel/build.sh``.
Stream files are read as CrystFEL 0.11 writes them (``libcrystfel/src/stream.c``): one chunk per
event, a peak table (fs/px, ss/px, 1/d, intensity, panel) and, per crystal, the reflections it
predicts (h k l I sigma peak background fs/px ss/px panel). Positions are CrystFEL's: pixel
centres at integer + 0.5.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from peaknet_serve.errors import PeakNetServeError

#: Where ``../shared/crystfel/build.sh`` installs by default.
DEFAULT_PREFIX = Path("/opt/crystfel")
#: Debian's HDF5 filter plugins (bitshuffle, lz4): what CrystFEL needs to read compressed CXI.
DEBIAN_PLUGIN_PATH = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins"


class CrystFELError(PeakNetServeError):
    """A CrystFEL program is missing, or exited with an error (the message ends with its stderr)."""


@dataclass(frozen=True)
class CrystFEL:
    """The CrystFEL programs found on this machine."""

    indexamajig: Path
    pattern_sim: Path

    def env(self) -> dict[str, str]:
        """This process's environment with Debian's HDF5 plugins visible to CrystFEL."""
        env = dict(os.environ)
        if "HDF5_PLUGIN_PATH" not in env and Path(DEBIAN_PLUGIN_PATH).is_dir():
            env["HDF5_PLUGIN_PATH"] = DEBIAN_PLUGIN_PATH
        return env


def find_crystfel() -> CrystFEL | None:
    """``indexamajig`` and ``pattern_sim`` from PATH, else from ``/opt/crystfel/bin``; or None."""
    found = {}
    for name in ("indexamajig", "pattern_sim"):
        path = shutil.which(name) or shutil.which(name, path=str(DEFAULT_PREFIX / "bin"))
        if path is None:
            return None
        found[name] = Path(path)
    return CrystFEL(**found)


@dataclass(frozen=True)
class UnitCell:
    """A unit cell as CrystFEL's cell files give it: lengths in Angstrom, angles in degrees."""

    a: float
    b: float
    c: float
    al: float = 90.0
    be: float = 90.0
    ga: float = 90.0
    lattice_type: str = "tetragonal"
    centering: str = "P"
    unique_axis: str = "c"

    def write(self, path: Path) -> Path:
        """Write a CrystFEL unit cell file (format: CrystFEL's ``man cell_file``)."""
        path.write_text(
            "CrystFEL unit cell file version 1.0\n\n"
            f"lattice_type = {self.lattice_type}\ncentering = {self.centering}\n"
            f"unique_axis = {self.unique_axis}\n\n"
            f"a = {self.a} A\nb = {self.b} A\nc = {self.c} A\n"
            f"al = {self.al} deg\nbe = {self.be} deg\nga = {self.ga} deg\n"
        )
        return path


#: Tetragonal hen egg-white lysozyme (P4_3 2_1 2), the usual test crystal.
LYSOZYME = UnitCell(a=79.1, b=79.1, c=37.9)


def simulate_patterns(
    crystfel: CrystFEL,
    cell_file: Path,
    geometry_file: Path,
    out_dir: Path,
    count: int,
    *,
    background_photons: float = 10.0,
    photons_per_pulse: float = 3e14,
    crystal_size_nm: float = 400.0,
    noise: bool = True,
) -> list[Path]:
    """Simulate ``count`` diffraction patterns of randomly oriented crystals with ``pattern_sim``.

    The frames land in ``out_dir/sim.h5-1.h5`` ... (one frame: ``sim.h5``) as ``/data/data``,
    float32 photons laid out as the geometry's ``min_fs``..``max_ss`` say, with Poisson noise on
    the Bragg signal and ``background_photons`` photons of Poisson background per pixel. Without
    ``--really-random`` pattern_sim seeds its generator the same way each run, so the frames are
    reproducible. The photon energy and detector distance come from the geometry file.

    Raises:
        CrystFELError: pattern_sim failed.
    """
    paths = (out_dir, cell_file, geometry_file)
    out_dir, cell_file, geometry_file = (Path(path).resolve() for path in paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(crystfel.pattern_sim), "-p", str(cell_file), "-g", str(geometry_file),
        "-n", str(count), "--random-orientation", "-o", str(out_dir / "sim.h5"),
        f"--background={background_photons:g}", f"--nphotons={photons_per_pulse:g}",
        f"--min-size={crystal_size_nm:g}", f"--max-size={crystal_size_nm:g}",
    ]
    if not noise:
        command.append("--no-noise")
    _run(command, crystfel, cwd=out_dir)
    if count == 1:  # pattern_sim numbers its files only when it writes several
        return [out_dir / "sim.h5"]
    return [out_dir / f"sim.h5-{i}.h5" for i in range(1, count + 1)]


@dataclass
class Crystal:
    """One indexing solution: its cell (nm, deg) and the reflections it predicts on the detector."""

    cell: tuple[float, ...]
    #: (N, 2) predicted reflection positions in CrystFEL's pixel convention, fs then ss.
    reflections: np.ndarray
    #: the panel of each predicted reflection, length N.
    reflection_panels: list[str]


@dataclass
class Chunk:
    """One event of a stream: where it came from, its peaks, and what indexing found."""

    filename: str
    event: str
    #: indexamajig's serial number: the event's position in its input list, from 1.
    serial: int
    hit: bool
    indexed_by: str
    photon_energy_ev: float
    #: (N, 3) peaks: fs, ss (pixels, CrystFEL convention: centres at integer + 0.5), intensity.
    peaks: np.ndarray
    peak_panels: list[str]
    crystals: list[Crystal] = field(default_factory=list)

    @property
    def indexed(self) -> bool:
        """True when some indexer gave a solution (``indexed_by`` is not ``none``)."""
        return self.indexed_by != "none" and bool(self.crystals)


def index(
    crystfel: CrystFEL,
    files: Sequence[Path],
    geometry_file: Path,
    cell_file: Path | None,
    stream_file: Path,
    *,
    peaks: str = "cxi",
    indexing: str = "asdf,taketwo",
    extra_args: Sequence[str] = (),
    threads: int = 2,
) -> list[Chunk]:
    """Run ``indexamajig`` on ``files`` and return the chunks of its stream, in input order.

    ``peaks`` is indexamajig's ``--peaks`` (``cxi`` reads the file's own peak list,
    ``peakfinder8`` searches itself; its thresholds go in ``extra_args``). ``indexing="none"``
    only reads the events and their peaks. Multi-event files (CXI) are expanded by indexamajig
    from the geometry's ``%`` dimension.

    Raises:
        CrystFELError: indexamajig refused the geometry or failed; its stderr is in the message.
    """
    stream_file = stream_file.resolve()
    list_file = stream_file.with_suffix(".lst")
    list_file.write_text("".join(f"{Path(f).resolve()}\n" for f in files))
    command = [
        str(crystfel.indexamajig), "-i", str(list_file), "-g", str(Path(geometry_file).resolve()),
        "-o", str(stream_file), f"--peaks={peaks}", f"--indexing={indexing}", "-j", str(threads),
        *([f"--pdb={Path(cell_file).resolve()}"] if cell_file is not None else []), *extra_args,
    ]
    _run(command, crystfel, cwd=stream_file.parent)
    return sorted(read_stream(stream_file), key=lambda chunk: chunk.serial)


def read_stream(path: Path) -> list[Chunk]:
    """Parse a CrystFEL 0.11 stream file into its chunks, in the order they were written."""
    chunks: list[Chunk] = []
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if line.startswith("----- Begin chunk"):
            chunks.append(_read_chunk(lines))
    return chunks


def peaks_on_reflections(chunk: Chunk, radius_px: float = 2.0) -> tuple[int, int]:
    """How many of a chunk's peaks lie within ``radius_px`` of a predicted reflection.

    Returns ``(on_reflections, peaks)``: the fraction a crystallographer reads as the share of
    peaks that are Bragg spots rather than noise. Needs an indexed chunk; otherwise ``(0, N)``.
    """
    total = len(chunk.peaks)
    if total == 0 or not chunk.crystals:
        return 0, total
    on = np.zeros(total, dtype=bool)
    panels = np.asarray(chunk.peak_panels)
    for crystal in chunk.crystals:
        ref_panels = np.asarray(crystal.reflection_panels)
        for panel in set(chunk.peak_panels):
            mine = panels == panel
            refs = crystal.reflections[ref_panels == panel]
            if not len(refs):
                continue
            diff = chunk.peaks[mine, None, :2] - refs[None, :, :]
            on[mine] |= (np.hypot(diff[..., 0], diff[..., 1]) <= radius_px).any(axis=1)
    return int(on.sum()), total


def _read_chunk(lines) -> Chunk:
    head: dict[str, str] = {}
    peaks: list[tuple[float, float, float]] = []
    peak_panels: list[str] = []
    crystals: list[Crystal] = []
    for line in lines:
        if line.startswith("----- End chunk"):
            break
        if line.startswith("Peaks from peak search"):
            next(lines)  # the column header
            for row in lines:
                if row.startswith("End of peak list"):
                    break
                fs, ss, _inv_d, intensity, panel = row.split()
                peaks.append((float(fs), float(ss), float(intensity)))
                peak_panels.append(panel)
        elif line.startswith("--- Begin crystal"):
            crystals.append(_read_crystal(lines))
        elif " = " in line:
            key, value = line.split(" = ", 1)
            head.setdefault(key.strip(), value.strip())
        elif ": " in line:
            key, value = line.split(": ", 1)
            head.setdefault(key.strip(), value.strip())
    return Chunk(
        filename=head.get("Image filename", ""),
        event=head.get("Event", ""),
        serial=int(head.get("Image serial number", "0")),
        hit=head.get("hit", "0") == "1",
        indexed_by=head.get("indexed_by", "none"),
        photon_energy_ev=float(head.get("photon_energy_eV", "nan")),
        peaks=np.asarray(peaks, dtype=float).reshape(-1, 3),
        peak_panels=peak_panels,
        crystals=crystals,
    )


def _read_crystal(lines) -> Crystal:
    cell: tuple[float, ...] = ()
    positions: list[tuple[float, float]] = []
    panels: list[str] = []
    for line in lines:
        if line.startswith("--- End crystal"):
            break
        if line.startswith("Cell parameters"):
            words = line.split()
            cell = tuple(float(w) for w in (*words[2:5], *words[6:9]))
        elif line.startswith("Reflections measured after indexing"):
            next(lines)  # the column header
            for row in lines:
                if row.startswith("End of reflections"):
                    break
                words = row.split()
                positions.append((float(words[7]), float(words[8])))
                panels.append(words[9])
    return Crystal(cell, np.asarray(positions, dtype=float).reshape(-1, 2), panels)


def _run(command: list[str], crystfel: CrystFEL, cwd: Path) -> None:
    result = subprocess.run(
        command, cwd=cwd, env=crystfel.env(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise CrystFELError(f"{Path(command[0]).name} exited {result.returncode}:\n{tail}")
