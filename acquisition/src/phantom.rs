//! Shepp-Logan phantoms with exact (analytic) projections: the 2-D ellipses with their exact Radon
//! transform, and the 3-D ellipsoids with their exact parallel-beam line integrals.
//!
//! PLACEHOLDER (owned by the reconstruction engineer, issue 3).
