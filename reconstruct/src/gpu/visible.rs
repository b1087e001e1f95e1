//! Which GPUs this process may use, from its environment: `CUDA_VISIBLE_DEVICES`, or the GPUs a Slurm
//! allocation (`--gres=gpu:N`) gave the task, `SLURM_STEP_GPUS` then `SLURM_JOB_GPUS`.
//!
//! Pure functions over a variable lookup, so every rule is unit-tested without a GPU or a scheduler:
//!
//! - `CUDA_VISIBLE_DEVICES` set: the CUDA driver itself exposes only the devices it lists, renumbered
//!   `0..k` in the listed order, so every ordinal the driver reports is used (no second filter). Entries are
//!   indices (`0,2`) or UUIDs (`GPU-…`, `MIG-…`); as in the driver, the list ends at the first entry that is
//!   neither, so `""` and Slurm's `NoDevFiles` mean no GPU at all.
//! - Otherwise `SLURM_STEP_GPUS`, else `SLURM_JOB_GPUS` (comma-separated node GPU indices, as Slurm writes
//!   them): those driver ordinals are used, in that order. When the node hides the other GPUs (device
//!   cgroups) the driver lists exactly the allocated ones renumbered from 0; that is recognised (as many
//!   devices as the allocation names, and a named index beyond them) and all of them are used. Slurm
//!   numbers GPUs in `gres.conf` order: set `CUDA_DEVICE_ORDER=PCI_BUS_ID` when that is PCI order.
//! - Nothing set: every device the driver lists.

/// An entry of `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceId {
    /// A device index on the node.
    Index(usize),
    /// A device UUID (`GPU-…` or `MIG-…`).
    Uuid(String),
}

/// What restricts the GPUs of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Nothing: every device the driver lists.
    Unrestricted,
    /// `CUDA_VISIBLE_DEVICES`, which the driver applies itself: these devices, renumbered from 0.
    Driver(Vec<DeviceId>),
    /// A Slurm allocation (`var` is the variable it came from) on a node whose driver may list more GPUs.
    Slurm {
        /// `SLURM_STEP_GPUS` or `SLURM_JOB_GPUS`.
        var: &'static str,
        /// The node GPU indices allocated, in Slurm's order, without repeats.
        indices: Vec<usize>,
    },
}

/// A variable that restricts the GPUs could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisibilityError {
    /// A Slurm GPU list holds something that is not a device index.
    #[error("{var}={value:?}: expected comma-separated GPU indices such as 0,2")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The allocation names a GPU the driver does not list.
    #[error("{var} names GPU {index}, but the CUDA driver lists {count} device(s)")]
    Absent {
        /// The variable.
        var: &'static str,
        /// The first index the driver does not list.
        index: usize,
        /// How many devices the driver lists.
        count: usize,
    },
}

/// The variables that select GPUs, in the order they take precedence.
pub const VARIABLES: [&str; 3] = ["CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"];

/// Parses `CUDA_VISIBLE_DEVICES` as the driver does: the list ends at the first entry that is neither an
/// index nor a UUID.
pub fn parse_cuda_visible(value: &str) -> Vec<DeviceId> {
    let mut ids = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let id = if let Ok(i) = entry.parse::<usize>() {
            DeviceId::Index(i)
        } else if (entry.starts_with("GPU-") || entry.starts_with("MIG-")) && entry.len() > 4 {
            DeviceId::Uuid(entry.to_string())
        } else {
            break;
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Parses a Slurm GPU list (`0,2`); empty or blank means no GPU.
fn parse_slurm(var: &'static str, value: &str) -> Result<Vec<usize>, VisibilityError> {
    let mut indices = Vec::new();
    if value.trim().is_empty() {
        return Ok(indices);
    }
    for entry in value.split(',').map(str::trim) {
        let i = entry.parse::<usize>().map_err(|_| VisibilityError::Invalid { var, value: value.to_string() })?;
        if !indices.contains(&i) {
            indices.push(i);
        }
    }
    Ok(indices)
}

impl Visibility {
    /// Reads the restriction from the variables `env` returns (`std::env::var(..).ok()` for the process).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Visibility, VisibilityError> {
        if let Some(v) = env(VARIABLES[0]) {
            return Ok(Visibility::Driver(parse_cuda_visible(&v)));
        }
        for var in [VARIABLES[1], VARIABLES[2]] {
            if let Some(v) = env(var) {
                return Ok(Visibility::Slurm { var, indices: parse_slurm(var, &v)? });
            }
        }
        Ok(Visibility::Unrestricted)
    }

    /// The restriction of this process.
    pub fn from_process() -> Result<Visibility, VisibilityError> {
        Visibility::from_env(|k| std::env::var(k).ok())
    }

    /// The driver ordinals to use when the driver lists `count` devices.
    pub fn ordinals(&self, count: usize) -> Result<Vec<usize>, VisibilityError> {
        match self {
            Visibility::Unrestricted => Ok((0..count).collect()),
            Visibility::Driver(ids) => Ok((0..count.min(ids.len())).collect()),
            Visibility::Slurm { var, indices } => match indices.iter().find(|&&i| i >= count) {
                None => Ok(indices.clone()),
                // Device cgroups: the driver lists exactly the allocated GPUs, renumbered from 0.
                Some(_) if count == indices.len() => Ok((0..count).collect()),
                Some(&index) => Err(VisibilityError::Absent { var, index, count }),
            },
        }
    }

    /// One line for logs, e.g. `SLURM_JOB_GPUS=1,3`, or `all devices`.
    pub fn describe(&self) -> String {
        let list = |v: Vec<String>| v.join(",");
        match self {
            Visibility::Unrestricted => "all devices".to_string(),
            Visibility::Driver(ids) => format!(
                "CUDA_VISIBLE_DEVICES={}",
                list(
                    ids.iter()
                        .map(|d| match d {
                            DeviceId::Index(i) => i.to_string(),
                            DeviceId::Uuid(u) => u.clone(),
                        })
                        .collect()
                )
            ),
            Visibility::Slurm { var, indices } => {
                format!("{var}={}", list(indices.iter().map(usize::to_string).collect()))
            }
        }
    }
}

/// The driver ordinals this process may use when the driver lists `count` devices, with the variables
/// `env` returns (see the module documentation for the rules).
pub fn visible_ordinals(env: impl Fn(&str) -> Option<String>, count: usize) -> Result<Vec<usize>, VisibilityError> {
    Visibility::from_env(env)?.ordinals(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn nothing_set_uses_every_device() {
        assert_eq!(visible_ordinals(env(&[]), 4), Ok(vec![0, 1, 2, 3]));
        assert_eq!(visible_ordinals(env(&[]), 0), Ok(vec![]));
        assert_eq!(Visibility::from_env(env(&[])).map(|v| v.describe()), Ok("all devices".into()));
    }

    #[test]
    fn cuda_visible_devices_is_applied_by_the_driver_and_not_again() {
        // "0,2": the driver lists two devices, ordinals 0 and 1 (physical 0 and 2).
        let vars = [("CUDA_VISIBLE_DEVICES", "0,2")];
        assert_eq!(
            Visibility::from_env(env(&vars)),
            Ok(Visibility::Driver(vec![DeviceId::Index(0), DeviceId::Index(2)]))
        );
        assert_eq!(visible_ordinals(env(&vars), 2), Ok(vec![0, 1]));
        // It takes precedence over the Slurm variables (Slurm sets both; CUDA already applied it).
        let vars = [("CUDA_VISIBLE_DEVICES", "1"), ("SLURM_JOB_GPUS", "3"), ("SLURM_STEP_GPUS", "3")];
        assert_eq!(visible_ordinals(env(&vars), 1), Ok(vec![0]));
        // Never more ordinals than entries, even if the driver were to report more.
        assert_eq!(visible_ordinals(env(&[("CUDA_VISIBLE_DEVICES", "5")]), 8), Ok(vec![0]));
    }

    #[test]
    fn empty_and_nodevfiles_mean_no_gpu() {
        for value in ["", " ", "NoDevFiles", "-1", "none"] {
            let vars = [("CUDA_VISIBLE_DEVICES", value)];
            assert_eq!(visible_ordinals(env(&vars), 4), Ok(vec![]), "CUDA_VISIBLE_DEVICES={value:?}");
        }
    }

    #[test]
    fn uuids_count_and_the_list_ends_at_the_first_invalid_entry() {
        let vars = [("CUDA_VISIBLE_DEVICES", "GPU-8c3a1f2e-0000-1111-2222-333344445555,MIG-GPU-abc/1/0")];
        assert_eq!(
            parse_cuda_visible(vars[0].1),
            vec![
                DeviceId::Uuid("GPU-8c3a1f2e-0000-1111-2222-333344445555".into()),
                DeviceId::Uuid("MIG-GPU-abc/1/0".into())
            ]
        );
        assert_eq!(visible_ordinals(env(&vars), 2), Ok(vec![0, 1]));
        assert_eq!(parse_cuda_visible("0, 2,x,3"), vec![DeviceId::Index(0), DeviceId::Index(2)]);
        assert_eq!(parse_cuda_visible("1,1,0"), vec![DeviceId::Index(1), DeviceId::Index(0)]);
        assert_eq!(parse_cuda_visible("GPU-"), vec![]);
    }

    #[test]
    fn slurm_allocation_selects_those_ordinals() {
        let vars = [("SLURM_JOB_GPUS", "1,3")];
        assert_eq!(visible_ordinals(env(&vars), 4), Ok(vec![1, 3]));
        assert_eq!(Visibility::from_env(env(&vars)).map(|v| v.describe()), Ok("SLURM_JOB_GPUS=1,3".into()));
        // The step's GPUs are more specific than the job's.
        let vars = [("SLURM_JOB_GPUS", "0,1,2,3"), ("SLURM_STEP_GPUS", "2")];
        assert_eq!(visible_ordinals(env(&vars), 4), Ok(vec![2]));
        // Slurm's order is kept, repeats dropped; an empty list means no GPU.
        assert_eq!(visible_ordinals(env(&[("SLURM_JOB_GPUS", "3,0,3")]), 4), Ok(vec![3, 0]));
        assert_eq!(visible_ordinals(env(&[("SLURM_JOB_GPUS", "")]), 4), Ok(vec![]));
    }

    #[test]
    fn slurm_allocation_on_a_node_that_hides_the_other_gpus() {
        // Device cgroups: GPUs 2 and 3 allocated, the driver lists just those two as 0 and 1.
        assert_eq!(visible_ordinals(env(&[("SLURM_JOB_GPUS", "2,3")]), 2), Ok(vec![0, 1]));
        // Otherwise an index the driver does not list is an error, not a silent run elsewhere.
        assert_eq!(
            visible_ordinals(env(&[("SLURM_JOB_GPUS", "1,5")]), 4),
            Err(VisibilityError::Absent { var: "SLURM_JOB_GPUS", index: 5, count: 4 })
        );
        let e = visible_ordinals(env(&[("SLURM_STEP_GPUS", "0,gpu1")]), 2).unwrap_err();
        assert_eq!(e, VisibilityError::Invalid { var: "SLURM_STEP_GPUS", value: "0,gpu1".into() });
        assert!(e.to_string().contains("SLURM_STEP_GPUS=\"0,gpu1\""), "{e}");
    }
}
