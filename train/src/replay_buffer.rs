//! Transitions in flat, preallocated ring arrays (one row per transition), sampled uniformly.

use std::io::{Read, Write};

use rand::Rng;

/// First bytes of a saved buffer (format version 1).
const MAGIC: &[u8; 8] = b"SDACRB01";

/// Why a saved replay buffer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BufferFileError {
    #[error("reading the replay buffer: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a saved replay buffer (wrong magic bytes)")]
    NotABuffer,
    #[error(
        "replay buffer saved with capacity, obs_dim, act_dim {saved:?}; this run has {expected:?}"
    )]
    Shape {
        saved: (usize, usize, usize),
        expected: (usize, usize, usize),
    },
    #[error("replay buffer counters are inconsistent: {len} stored, cursor at {cursor}")]
    Counters { len: usize, cursor: usize },
}

/// A batch of transitions, row-major, ready to become tensors.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub obs: Vec<f32>,
    /// Actions in normalised units (what the policy produced, exploration noise included).
    pub actions: Vec<f32>,
    pub rewards: Vec<f32>,
    pub next_obs: Vec<f32>,
    /// 1 where the episode terminated (no bootstrap), 0 otherwise (truncation bootstraps).
    pub terminated: Vec<f32>,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    obs_dim: usize,
    act_dim: usize,
    capacity: usize,
    obs: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    next_obs: Vec<f32>,
    terminated: Vec<f32>,
    /// Next row to write.
    cursor: usize,
    len: usize,
}

impl ReplayBuffer {
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Self {
        Self {
            obs_dim,
            act_dim,
            capacity,
            obs: vec![0.0; capacity * obs_dim],
            actions: vec![0.0; capacity * act_dim],
            rewards: vec![0.0; capacity],
            next_obs: vec![0.0; capacity * obs_dim],
            terminated: vec![0.0; capacity],
            cursor: 0,
            len: 0,
        }
    }

    /// Stores one transition, overwriting the oldest when full.
    pub fn push(
        &mut self,
        obs: &[f64],
        action: &[f32],
        reward: f64,
        next_obs: &[f64],
        terminated: bool,
    ) {
        let (i, od, ad) = (self.cursor, self.obs_dim, self.act_dim);
        for (dst, src) in self.obs[i * od..(i + 1) * od].iter_mut().zip(obs) {
            *dst = *src as f32;
        }
        for (dst, src) in self.next_obs[i * od..(i + 1) * od].iter_mut().zip(next_obs) {
            *dst = *src as f32;
        }
        self.actions[i * ad..(i + 1) * ad].copy_from_slice(action);
        self.rewards[i] = reward as f32;
        self.terminated[i] = if terminated { 1.0 } else { 0.0 };
        self.cursor = (self.cursor + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// Writes the buffer: a header (magic, capacity, dimensions, length, cursor) and the stored
    /// rows of each array as little-endian f32.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(MAGIC)?;
        for value in [
            self.capacity,
            self.obs_dim,
            self.act_dim,
            self.len,
            self.cursor,
        ] {
            out.write_all(&(value as u64).to_le_bytes())?;
        }
        let (od, ad, len) = (self.obs_dim, self.act_dim, self.len);
        for array in [
            &self.obs[..len * od],
            &self.actions[..len * ad],
            &self.rewards[..len],
            &self.next_obs[..len * od],
            &self.terminated[..len],
        ] {
            for value in array {
                out.write_all(&value.to_le_bytes())?;
            }
        }
        Ok(())
    }

    /// Reads what [`ReplayBuffer::write_to`] wrote into a buffer of this capacity and these
    /// dimensions (those of the run being resumed).
    pub fn read_from(
        input: &mut impl Read,
        capacity: usize,
        obs_dim: usize,
        act_dim: usize,
    ) -> Result<Self, BufferFileError> {
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(BufferFileError::NotABuffer);
        }
        let mut header = [0usize; 5];
        for value in &mut header {
            let mut bytes = [0u8; 8];
            input.read_exact(&mut bytes)?;
            *value = usize::try_from(u64::from_le_bytes(bytes)).unwrap_or(usize::MAX);
        }
        let [saved_capacity, saved_obs_dim, saved_act_dim, len, cursor] = header;
        if (saved_capacity, saved_obs_dim, saved_act_dim) != (capacity, obs_dim, act_dim) {
            return Err(BufferFileError::Shape {
                saved: (saved_capacity, saved_obs_dim, saved_act_dim),
                expected: (capacity, obs_dim, act_dim),
            });
        }
        if len > capacity || cursor >= capacity.max(1) || (len < capacity && cursor != len) {
            return Err(BufferFileError::Counters { len, cursor });
        }
        let mut buffer = Self::new(capacity, obs_dim, act_dim);
        buffer.len = len;
        buffer.cursor = cursor;
        for array in [
            &mut buffer.obs[..len * obs_dim],
            &mut buffer.actions[..len * act_dim],
            &mut buffer.rewards[..len],
            &mut buffer.next_obs[..len * obs_dim],
            &mut buffer.terminated[..len],
        ] {
            for value in array {
                let mut bytes = [0u8; 4];
                input.read_exact(&mut bytes)?;
                *value = f32::from_le_bytes(bytes);
            }
        }
        Ok(buffer)
    }

    /// `size` transitions drawn uniformly with replacement into `batch` (its buffers are reused).
    pub fn sample_into(&self, size: usize, rng: &mut impl Rng, batch: &mut Batch) {
        let (od, ad) = (self.obs_dim, self.act_dim);
        batch.obs.clear();
        batch.actions.clear();
        batch.rewards.clear();
        batch.next_obs.clear();
        batch.terminated.clear();
        for _ in 0..size {
            let i = rng.random_range(0..self.len);
            batch.obs.extend_from_slice(&self.obs[i * od..(i + 1) * od]);
            batch
                .actions
                .extend_from_slice(&self.actions[i * ad..(i + 1) * ad]);
            batch.rewards.push(self.rewards[i]);
            batch
                .next_obs
                .extend_from_slice(&self.next_obs[i * od..(i + 1) * od]);
            batch.terminated.push(self.terminated[i]);
        }
        batch.len = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ring_overwrites_the_oldest_and_samples_what_it_holds() {
        let mut buffer = ReplayBuffer::new(3, 1, 1);
        for k in 0..5 {
            let k = k as f64;
            buffer.push(&[k], &[k as f32], k, &[k + 0.5], k == 4.0);
        }
        assert_eq!(buffer.len, 3);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut batch = Batch::default();
        buffer.sample_into(200, &mut rng, &mut batch);
        assert!(
            batch.obs.iter().all(|&o| (2.0..=4.0).contains(&o)),
            "{:?}",
            batch.obs
        );
        for i in 0..batch.len {
            assert_eq!(batch.actions[i], batch.obs[i]);
            assert_eq!(batch.next_obs[i], batch.obs[i] + 0.5);
            assert_eq!(
                batch.terminated[i],
                if batch.obs[i] == 4.0 { 1.0 } else { 0.0 }
            );
        }
        for k in [2.0, 3.0, 4.0] {
            assert!(batch.obs.contains(&k), "uniform sampling reaches {k}");
        }
    }

    fn filled(pushes: usize) -> ReplayBuffer {
        let mut buffer = ReplayBuffer::new(4, 2, 1);
        for k in 0..pushes {
            let k = k as f64;
            buffer.push(&[k, -k], &[0.5 * k as f32], k, &[k + 1.0, 0.25], k == 2.0);
        }
        buffer
    }

    #[test]
    fn a_saved_buffer_reads_back_equal_partly_filled_or_wrapped() {
        for pushes in [0, 3, 6] {
            let buffer = filled(pushes);
            let mut bytes = Vec::new();
            buffer.write_to(&mut bytes).unwrap();
            let read = ReplayBuffer::read_from(&mut bytes.as_slice(), 4, 2, 1).unwrap();
            assert_eq!(read, buffer, "after {pushes} pushes");
        }
    }

    #[test]
    fn a_bad_buffer_file_is_a_typed_error() {
        let mut bytes = Vec::new();
        filled(3).write_to(&mut bytes).unwrap();
        assert!(matches!(
            ReplayBuffer::read_from(&mut bytes.as_slice(), 8, 2, 1),
            Err(BufferFileError::Shape { .. })
        ));
        assert!(matches!(
            ReplayBuffer::read_from(&mut &bytes[..bytes.len() - 3], 4, 2, 1),
            Err(BufferFileError::Io(_))
        ));
        let mut garbage = bytes.clone();
        garbage[0] = b'X';
        assert!(matches!(
            ReplayBuffer::read_from(&mut garbage.as_slice(), 4, 2, 1),
            Err(BufferFileError::NotABuffer)
        ));
        let mut bad_cursor = bytes.clone();
        bad_cursor[8 + 4 * 8] = 9;
        assert!(matches!(
            ReplayBuffer::read_from(&mut bad_cursor.as_slice(), 4, 2, 1),
            Err(BufferFileError::Counters { .. })
        ));
    }
}
