use std::path::PathBuf;

/// Everything that can go wrong in this crate. Messages name the offending value and, where a
/// command fixes it, the command.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown task `{name}`; valid tasks: {}", crate::TASK_NAMES.join(", "))]
    UnknownTask { name: String },

    #[error(
        "Gymnasium task model {} is missing. Run `{}` from the workspace root, or point \
         SDAC_GYM_ASSETS at a folder holding Gymnasium's MuJoCo XML files.",
        path.display(),
        crate::third_party::SETUP_COMMAND
    )]
    AssetMissing { path: PathBuf },

    #[error("MuJoCo could not load {}: {message}", path.display())]
    ModelLoad { path: PathBuf, message: String },

    #[error("model {model} has no {kind} named `{name}`")]
    ModelMissingName {
        model: &'static str,
        kind: &'static str,
        name: &'static str,
    },

    #[error("action has {got} values, {task} takes {expected}")]
    ActionLength {
        task: &'static str,
        expected: usize,
        got: usize,
    },

    #[error("action[{index}] is {value}: actions must be finite")]
    NonFiniteAction { index: usize, value: f64 },

    #[error("observation buffer has {got} values, {task} writes {expected}")]
    ObservationLength {
        task: &'static str,
        expected: usize,
        got: usize,
    },

    #[error("{what} has {got} values, {task} has {expected}")]
    StateLength {
        task: &'static str,
        what: &'static str,
        expected: usize,
        got: usize,
    },

    #[error("{what}[{index}] is {value}: a state must be finite")]
    NonFiniteState {
        what: &'static str,
        index: usize,
        value: f64,
    },

    #[error("saved state does not fit {task}: {message}")]
    SavedState { task: &'static str, message: String },

    #[error("step called after the episode ended (terminated or truncated): call reset first")]
    EpisodeOver,

    #[error("{}:{line}: {message}", path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("vectorised runner: {0}")]
    VecEnv(String),
}
