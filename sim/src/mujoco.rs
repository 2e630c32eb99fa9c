//! The MuJoCo side shared by every task: model loading, state setting and stepping exactly as
//! Gymnasium's `MujocoEnv` does them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mujoco_rs::prelude::{MjData, MjModel, MjtObjBase};

use crate::SimError;

/// Sends MuJoCo's own messages (warnings such as "Nan, Inf or huge value in QACC", model
/// compiler notes) to the `log` crate, target `mujoco`, instead of MuJoCo printing them to
/// standard output. Call once, first thing in `main`.
///
/// # Safety
/// No other thread may use MuJoCo while this runs (it sets a MuJoCo global).
pub unsafe fn route_mujoco_messages_to_log() {
    // SAFETY: forwarded to the caller.
    unsafe { mujoco_rs::logging::install_logging_hook() }
}

/// The folder that holds Gymnasium's MuJoCo task models (`half_cheetah.xml`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    dir: PathBuf,
}

impl Assets {
    /// `SDAC_GYM_ASSETS` if set, else the cache folder that `bash tools/setup.sh` fills.
    pub fn discover() -> Result<Self, SimError> {
        let dir = std::env::var_os("SDAC_GYM_ASSETS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("SDAC_DEFAULT_ASSETS_DIR")));
        Self::at(dir)
    }

    /// Assets in `dir`; fails when the folder does not exist.
    pub fn at(dir: impl Into<PathBuf>) -> Result<Self, SimError> {
        let dir = dir.into();
        if dir.is_dir() {
            Ok(Self { dir })
        } else {
            Err(SimError::AssetMissing { path: dir })
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn model_path(&self, file: &str) -> Result<PathBuf, SimError> {
        let path = self.dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(SimError::AssetMissing { path })
        }
    }
}

pub(crate) fn load_model(assets: &Assets, file: &str) -> Result<Arc<MjModel>, SimError> {
    let path = assets.model_path(file)?;
    MjModel::from_xml(&path)
        .map(Arc::new)
        .map_err(|e| SimError::ModelLoad {
            path,
            message: e.to_string(),
        })
}

/// A loaded model and its data, with the initial state Gymnasium keeps as `init_qpos/init_qvel`.
pub(crate) struct Sim {
    pub data: MjData<Arc<MjModel>>,
    pub init_qpos: Vec<f64>,
    pub init_qvel: Vec<f64>,
    pub frame_skip: u32,
    /// Run `mj_rnePostConstraint` after stepping, which fills `cfrc_ext`. Gymnasium always runs
    /// it; it changes no state, so tasks that never read `cfrc_ext` skip it.
    pub computes_contact_forces: bool,
    /// The integration state before the last physics substep of the last step.
    last_substep_start: Vec<f64>,
    /// Whether the data comes from a step (else from a reset's `mj_forward`).
    stepped: bool,
}

/// `mjSTATE_INTEGRATION`: everything `mj_step` reads.
const INTEGRATION_STATE: u32 = mujoco_rs::mujoco_c::mjtState::mjSTATE_INTEGRATION as u32;

impl Sim {
    pub fn load(
        assets: &Assets,
        file: &str,
        frame_skip: u32,
        computes_contact_forces: bool,
    ) -> Result<Self, SimError> {
        let model = load_model(assets, file)?;
        let data = MjData::new(model);
        let init_qpos = data.qpos().to_vec();
        let init_qvel = data.qvel().to_vec();
        let state_size = data.model().state_size(INTEGRATION_STATE);
        Ok(Self {
            data,
            init_qpos,
            init_qvel,
            frame_skip,
            computes_contact_forces,
            last_substep_start: vec![0.0; state_size],
            stepped: false,
        })
    }

    pub fn model(&self) -> &MjModel {
        self.data.model()
    }

    pub fn nq(&self) -> usize {
        self.init_qpos.len()
    }

    pub fn nv(&self) -> usize {
        self.init_qvel.len()
    }

    pub fn nu(&self) -> usize {
        self.data.ctrl().len()
    }

    pub fn timestep_s(&self) -> f64 {
        self.model().ffi().opt.timestep
    }

    pub fn dt_s(&self) -> f64 {
        self.timestep_s() * f64::from(self.frame_skip)
    }

    pub fn body_id(&self, model: &'static str, name: &'static str) -> Result<usize, SimError> {
        self.model()
            .name_to_id(MjtObjBase::mjOBJ_BODY, name)
            .ok_or(SimError::ModelMissingName {
                model,
                kind: "body",
                name,
            })
    }

    /// `mj_resetData`: the state Gymnasium's `reset` starts from before adding noise.
    pub fn reset_data(&mut self) {
        self.data.reset();
        self.stepped = false;
    }

    /// Gymnasium's `set_state`: copy positions and velocities, then `mj_forward`.
    pub fn set_state(&mut self, qpos: &[f64], qvel: &[f64]) {
        self.data.qpos_mut().copy_from_slice(qpos);
        self.data.qvel_mut().copy_from_slice(qvel);
        self.data.forward();
        self.stepped = false;
    }

    /// Gymnasium's `do_simulation`: set the controls and take `frame_skip` physics steps.
    pub fn do_simulation(&mut self, ctrl: &[f64]) {
        self.data.ctrl_mut().copy_from_slice(ctrl);
        for substep in 1..=self.frame_skip {
            if substep == self.frame_skip {
                // Sized from `state_size` at load: cannot be too small.
                let _ = self
                    .data
                    .try_read_state_into(INTEGRATION_STATE, &mut self.last_substep_start);
            }
            self.data.step();
        }
        self.finish_step();
        self.stepped = true;
    }

    fn finish_step(&mut self) {
        if self.computes_contact_forces {
            self.data.rne_post_constraint();
        }
    }

    /// The physics part of [`crate::EnvState`]: `(state, replay_last_substep)`.
    pub fn save_physics(&self) -> (Vec<f64>, bool) {
        if self.stepped {
            (self.last_substep_start.clone(), true)
        } else {
            (self.data.state(INTEGRATION_STATE).into_vec(), false)
        }
    }

    /// Restores what [`Sim::save_physics`] returned: the data ends as the step (or reset) that
    /// saved it left it.
    pub fn load_physics(&mut self, state: &[f64], replay_last_substep: bool) -> Result<(), String> {
        let expected = self.last_substep_start.len();
        if state.len() != expected {
            return Err(format!(
                "physics state has {} values, expected {expected}",
                state.len()
            ));
        }
        if let Some(index) = state.iter().position(|v| !v.is_finite()) {
            return Err(format!("physics state value {index} is {}", state[index]));
        }
        self.data.reset();
        self.data
            .set_state(state, INTEGRATION_STATE)
            .map_err(|e| e.to_string())?;
        if replay_last_substep {
            self.last_substep_start.copy_from_slice(state);
            self.data.step();
            self.finish_step();
        } else {
            self.data.forward();
        }
        self.stepped = replay_last_substep;
        Ok(())
    }

    pub fn qpos(&self) -> &[f64] {
        self.data.qpos()
    }

    pub fn qvel(&self) -> &[f64] {
        self.data.qvel()
    }

    /// Cartesian position of a body's frame (what Gymnasium's `get_body_com` returns).
    pub fn body_pos(&self, body: usize) -> [f64; 3] {
        self.data.xpos()[body]
    }
}

/// Bare `mj_step` on a task's model with fixed controls: the floor the benchmark compares the
/// tasks against, in the same binary.
pub struct RawStepper {
    data: MjData<Arc<MjModel>>,
}

impl RawStepper {
    pub fn new(assets: &Assets, file: &str) -> Result<Self, SimError> {
        Ok(Self {
            data: MjData::new(load_model(assets, file)?),
        })
    }

    pub fn nu(&self) -> usize {
        self.data.ctrl().len()
    }

    /// Sets the controls, then runs `n` times `mj_step`.
    pub fn step(&mut self, ctrl: &[f64], n: u32) {
        self.data.ctrl_mut().copy_from_slice(ctrl);
        for _ in 0..n {
            self.data.step();
        }
    }

    /// `mj_rnePostConstraint`, the extra pass Gymnasium runs after each environment step.
    pub fn rne_post_constraint(&mut self) {
        self.data.rne_post_constraint();
    }

    /// Sets positions and velocities, then `mj_forward` (to follow an env's trajectory).
    pub fn set_state(&mut self, qpos: &[f64], qvel: &[f64]) {
        self.data.qpos_mut().copy_from_slice(qpos);
        self.data.qvel_mut().copy_from_slice(qvel);
        self.data.forward();
    }
}
