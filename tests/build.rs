// Same rpath as the `sdac` binary: these tests link MuJoCo through sdac-sim.
include!("../train/build.rs");
