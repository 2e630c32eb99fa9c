//! Where the third-party files that `bash tools/setup.sh` installs are expected, and the
//! check that says which command fixes a missing one. Shared by the build script (the MuJoCo
//! library) and the crate (the task models), so both give the same advice.

use std::path::{Path, PathBuf};

/// The command that installs MuJoCo and Gymnasium's task models into the cache folder.
pub const SETUP_COMMAND: &str = "bash tools/setup.sh";

/// The MuJoCo version mujoco-rs 7.0.0 binds.
pub const MUJOCO_VERSION: &str = "3.17.0";

/// `<workspace>/.cache/third_party/mujoco/lib` for a crate at `<workspace>/<crate>`.
pub fn default_mujoco_lib_dir(crate_dir: &Path) -> PathBuf {
    workspace_dir(crate_dir).join(".cache/third_party/mujoco/lib")
}

/// `<workspace>/.cache/third_party/gymnasium/assets` for a crate at `<workspace>/<crate>`.
pub fn default_assets_dir(crate_dir: &Path) -> PathBuf {
    workspace_dir(crate_dir).join(".cache/third_party/gymnasium/assets")
}

fn workspace_dir(crate_dir: &Path) -> PathBuf {
    crate_dir.parent().unwrap_or(crate_dir).to_path_buf()
}

/// Checks that `lib_dir` holds `libmujoco.so`; the error names the setup command.
pub fn check_mujoco_lib(lib_dir: &Path) -> Result<PathBuf, String> {
    let lib = lib_dir.join("libmujoco.so");
    if lib.is_file() {
        Ok(lib)
    } else {
        Err(format!(
            "MuJoCo {MUJOCO_VERSION} is missing: no libmujoco.so in {}. Run `{SETUP_COMMAND}` \
             from the workspace root (it downloads the `mujoco=={MUJOCO_VERSION}` wheel from PyPI \
             and unpacks the library into .cache/third_party/).",
            lib_dir.display()
        ))
    }
}
