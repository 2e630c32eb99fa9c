// The `sdac` binary links MuJoCo (through sdac-sim): point its rpath at the library folder
// that `.cargo/config.toml` names, so it runs without LD_LIBRARY_PATH.

fn main() {
    println!("cargo::rerun-if-env-changed=MUJOCO_DYNAMIC_LINK_DIR");
    if let Some(dir) = std::env::var_os("MUJOCO_DYNAMIC_LINK_DIR") {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{}", dir.to_string_lossy());
    }
}
