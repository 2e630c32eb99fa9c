//! Links the binaries and tests of this crate (and, through `DEP_` metadata-free rpath
//! arguments, nothing else) against the MuJoCo library in the cache folder, and stops the
//! build with the setup command when the library is missing.

#[path = "src/third_party.rs"]
mod third_party;

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-env-changed=MUJOCO_DYNAMIC_LINK_DIR");
    println!("cargo::rerun-if-changed=src/third_party.rs");
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lib_dir = std::env::var_os("MUJOCO_DYNAMIC_LINK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| third_party::default_mujoco_lib_dir(&crate_dir));
    match third_party::check_mujoco_lib(&lib_dir) {
        Ok(lib) => println!("cargo::rerun-if-changed={}", lib.display()),
        Err(message) => {
            println!("cargo::error={message}");
            return;
        }
    }
    println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!(
        "cargo::rustc-env=SDAC_DEFAULT_ASSETS_DIR={}",
        third_party::default_assets_dir(&crate_dir).display()
    );
}
