//! Which reconstruction algorithm turns a filtered sinogram into a slice: filtered backprojection or gridrec.

use std::fmt;
use std::str::FromStr;

/// The reconstruction algorithm (`beamline recon --method`).
///
/// Both use the same axis convention ([`crate::geometry`]), the same six filters ([`crate::filter`]) and give
/// the same output scale, so either can be swapped for the other.
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
}

impl Method {
    /// Both methods, in documentation order.
    pub const ALL: [Method; 2] = [Method::Fbp, Method::Gridrec];

    /// The name used on the command line and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            Method::Fbp => "fbp",
            Method::Gridrec => "gridrec",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A method name that is not `fbp` or `gridrec`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown reconstruction method {0:?}: use fbp or gridrec")]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase();
        Method::ALL.into_iter().find(|m| m.name() == key).ok_or_else(|| UnknownMethod(s.to_string()))
    }
}
