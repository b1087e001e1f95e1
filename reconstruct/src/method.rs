//! Which reconstruction algorithm turns a sinogram into a slice: filtered backprojection, gridrec, or the
//! iterative SIRT and CGLS; and the settings of the methods beyond FBP ([`MethodOptions`]).

use std::fmt;
use std::str::FromStr;

/// The reconstruction algorithm (`beamline recon --method`).
///
/// All use the same axis convention ([`crate::geometry`]) and give the same output scale, so any can be swapped
/// for another; FBP and gridrec use the same six filters ([`crate::filter`]), SIRT and CGLS none (they fit the
/// `-log` sinogram with the projector pair of [`crate::iterative`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Filtered backprojection (CPU or CUDA): cost grows as `N^2 x angles` per slice. The reference method:
    /// linear interpolation per ray, runs on every backend.
    #[default]
    Fbp,
    /// Direct Fourier inversion by gridding ([`crate::gridrec`], CPU): cost grows as `N^2 log N` (plus
    /// `N x angles` kernel spreads), several times faster than FBP on large slices with many angles.
    Gridrec,
    /// SIRT ([`crate::iterative::sirt`], CPU): `--iterations` passes of forward and back projection, each about
    /// twice an FBP's cost; least noise on few or noisy angles, optional non-negativity.
    Sirt,
    /// CGLS ([`crate::iterative::cgls`], CPU): conjugate gradients on the least-squares problem; converges in
    /// far fewer iterations than SIRT, stop early (~10-30) on noisy data.
    Cgls,
}

impl Method {
    /// Every method, in documentation order.
    pub const ALL: [Method; 4] = [Method::Fbp, Method::Gridrec, Method::Sirt, Method::Cgls];

    /// The name used on the command line and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            Method::Fbp => "fbp",
            Method::Gridrec => "gridrec",
            Method::Sirt => "sirt",
            Method::Cgls => "cgls",
        }
    }

    /// The iterative method, for SIRT and CGLS.
    pub fn iterative(self) -> Option<crate::iterative::Iterative> {
        match self {
            Method::Sirt => Some(crate::iterative::Iterative::Sirt),
            Method::Cgls => Some(crate::iterative::Iterative::Cgls),
            Method::Fbp | Method::Gridrec => None,
        }
    }

    /// Whether the CUDA backend implements this method (FBP only; the others run on the CPU).
    pub fn runs_on_cuda(self) -> bool {
        self == Method::Fbp
    }

    /// `--iterations` when none is given: 100 for SIRT, 20 for CGLS (0 for the direct methods).
    pub fn default_iterations(self) -> usize {
        match self {
            Method::Sirt => 100,
            Method::Cgls => 20,
            Method::Fbp | Method::Gridrec => 0,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A method name that is not `fbp`, `gridrec`, `sirt` or `cgls`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown reconstruction method {0:?}: use fbp, gridrec, sirt or cgls")]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase();
        Method::ALL.into_iter().find(|m| m.name() == key).ok_or_else(|| UnknownMethod(s.to_string()))
    }
}

/// Settings of the methods beyond plain FBP, as asked (`--iterations`, `--nonnegative`, `--init`); checked
/// against the method by [`MethodOptions::iterative_for`].
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MethodOptions {
    /// `--iterations N` (`None`: [`Method::default_iterations`]).
    pub iterations: Option<usize>,
    /// `--nonnegative` (SIRT only).
    pub nonnegative: bool,
    /// `--init fbp` (SIRT and CGLS).
    pub init: crate::iterative::Init,
    /// `--phase paganin` and its parameters (any method).
    pub phase: Option<crate::paganin::PhaseOptions>,
    /// `--offset-axis [auto|left|right]`: a 360-degree half-acquisition scan stitched into the doubled field
    /// of view ([`crate::offset_axis`]); any method.
    pub offset_axis: Option<crate::offset_axis::OffsetAxis>,
}

/// Method settings that do not fit the method asked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MethodOptionError {
    /// An iterative setting given to a direct method.
    #[error(
        "{option} applies to --method sirt or cgls, not --method {method}; leave it out or pick an iterative method"
    )]
    NotIterative {
        /// The option as written.
        option: &'static str,
        /// The method given.
        method: Method,
    },
    /// `--nonnegative` with CGLS.
    #[error("--nonnegative applies to --method sirt (CGLS has no clamp: it would break its conjugate directions)")]
    NonnegativeNeedsSirt,
    /// `--iterations 0`.
    #[error("--iterations must be at least 1")]
    ZeroIterations,
}

impl MethodOptions {
    /// The iterative settings for `method` (all defaults for FBP and gridrec), or which option does not fit.
    pub fn iterative_for(&self, method: Method) -> Result<crate::iterative::IterativeOptions, MethodOptionError> {
        let not = |option| Err(MethodOptionError::NotIterative { option, method });
        if method.iterative().is_none() {
            if self.iterations.is_some() {
                return not("--iterations");
            }
            if self.nonnegative {
                return not("--nonnegative");
            }
            if self.init != crate::iterative::Init::Zero {
                return not("--init");
            }
            return Ok(crate::iterative::IterativeOptions { iterations: 0, ..Default::default() });
        }
        if self.nonnegative && method != Method::Sirt {
            return Err(MethodOptionError::NonnegativeNeedsSirt);
        }
        let iterations = self.iterations.unwrap_or(method.default_iterations());
        if iterations == 0 {
            return Err(MethodOptionError::ZeroIterations);
        }
        Ok(crate::iterative::IterativeOptions { iterations, nonnegative: self.nonnegative, init: self.init })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iterative::Init;

    #[test]
    fn iterative_settings_fit_their_method() {
        let o = MethodOptions::default();
        assert_eq!(o.iterative_for(Method::Sirt).unwrap().iterations, 100);
        assert_eq!(o.iterative_for(Method::Cgls).unwrap().iterations, 20);
        let o = MethodOptions { iterations: Some(7), nonnegative: true, init: Init::Fbp, ..Default::default() };
        let s = o.iterative_for(Method::Sirt).unwrap();
        assert_eq!((s.iterations, s.nonnegative, s.init), (7, true, Init::Fbp));
        assert!(matches!(o.iterative_for(Method::Cgls), Err(MethodOptionError::NonnegativeNeedsSirt)));
        let e = o.iterative_for(Method::Gridrec).unwrap_err().to_string();
        assert!(e.contains("--iterations applies to --method sirt or cgls"), "{e}");
        let o = MethodOptions { init: Init::Fbp, ..Default::default() };
        assert!(o.iterative_for(Method::Fbp).unwrap_err().to_string().contains("--init"));
        let o = MethodOptions { iterations: Some(0), ..Default::default() };
        assert!(matches!(o.iterative_for(Method::Cgls), Err(MethodOptionError::ZeroIterations)));
        assert_eq!("CGLS".parse::<Method>().unwrap(), Method::Cgls);
    }
}
