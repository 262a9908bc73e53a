# Sourced by scripts/test.sh: the real CrystFEL (indexamajig, pattern_sim) for the tests that
# check what the service writes. ../shared/crystfel/build.sh (idempotent) builds it into
# CRYSTFEL_PREFIX (default /opt/crystfel) where this can (root with apt-get); PREFIX/bin goes on
# PATH. HDF5_PLUGIN_PATH is set for the CrystFEL programs only (peaknet_serve.crystfel), never
# for the test process: there it would shadow hdf5plugin's bitshuffle filter (README, CrystFEL).
CRYSTFEL_PREFIX=${CRYSTFEL_PREFIX:-/opt/crystfel}
CRYSTFEL_BUILD="$(pwd)/../shared/crystfel/build.sh"
if [ -x "$CRYSTFEL_BUILD" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    "$CRYSTFEL_BUILD" "$CRYSTFEL_PREFIX" > /tmp/crystfel-build.log 2>&1 \
        || { tail -n 40 /tmp/crystfel-build.log; return 1; }
fi
if [ -d "$CRYSTFEL_PREFIX/bin" ]; then
    export PATH="$CRYSTFEL_PREFIX/bin:$PATH"
fi
