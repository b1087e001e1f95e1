//! UTC timestamps in RFC 3339 / ISO 8601 form: the workspace's one implementation is
//! [`profiling::clock::rfc3339`], re-exported here for the files this crate writes.

pub use profiling::clock::rfc3339;
