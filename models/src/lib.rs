//! SDAC's models. Present: the DDPM diffusion schedule ([`DiffusionSchedule`]). The candle
//! networks, samplers and export are not written yet.

mod schedule;

pub use schedule::DiffusionSchedule;
