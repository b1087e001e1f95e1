//! CURVE security (CurveZMQ): who may send to a receiver, and who may read the stream on the way.
//!
//! Keys live in ZeroMQ certificate files, the format pyzmq's `zmq.auth.create_certificates` writes and
//! `zmq.auth.load_certificate` reads: `NAME.key` holds the public key, `NAME.key_secret` (mode 0600) both
//! keys, each as a Z85 text line `public-key = "..."` / `secret-key = "..."`.
//!
//! A receiver is a CURVE server ([`CurveServer`]): it holds its secret key and the public keys of the senders
//! it admits, and a ZAP handler ([`ZapHandler`], RFC 27) running in the receiver's ZeroMQ context answers each
//! handshake, accepting only listed keys; refused peers are logged and counted ([`ZapCounts`]). A sender is
//! a CURVE client ([`CurveClient`]): its own key pair and the receiver's public key. Every message after the
//! handshake is encrypted and authenticated.
//!
//! CURVE needs a libzmq built with libsodium: the bundled copy the `zmq` crate compiles has none, so the
//! workspace links Debian's `libzmq3-dev` instead (`.cargo/config.toml`). [`available`] says which one is
//! linked.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The endpoint libzmq asks for ZAP (RFC 27): a handler binds a REP socket here in the same context.
pub const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Why CURVE could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    /// The linked libzmq has no CURVE.
    #[error(
        "this beamline is linked with a libzmq without CURVE (zmq::has(\"curve\") is false): build it against \
         Debian's libzmq3-dev (`apt-get install libzmq3-dev`, which `.ci/setup` does; `.cargo/config.toml` links it)"
    )]
    Unavailable,
    /// A key file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A key file does not hold what it must.
    #[error("{path}: {what}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        what: String,
    },
    /// ZeroMQ refused a CURVE option or the ZAP socket.
    #[error("ZeroMQ {op}: {cause}")]
    Zmq {
        /// What was attempted.
        op: &'static str,
        /// The libzmq error.
        cause: zmq::Error,
    },
}

fn zerr(op: &'static str) -> impl FnOnce(zmq::Error) -> CurveError {
    move |cause| CurveError::Zmq { op, cause }
}

/// True when the linked libzmq supports CURVE.
pub fn available() -> bool {
    zmq::has("curve") == Some(true)
}

fn need_curve() -> Result<(), CurveError> {
    if available() {
        Ok(())
    } else {
        Err(CurveError::Unavailable)
    }
}

/// A CURVE key pair (32-byte Curve25519 keys).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The public key.
    pub public: [u8; 32],
    /// The secret key.
    pub secret: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public", &z85(&self.public)).field("secret", &"(hidden)").finish()
    }
}

impl KeyPair {
    /// A new key pair from libzmq (libsodium's random source).
    pub fn generate() -> Result<KeyPair, CurveError> {
        need_curve()?;
        let p = zmq::CurveKeyPair::new().map_err(zerr("zmq_curve_keypair"))?;
        Ok(KeyPair { public: p.public_key, secret: p.secret_key })
    }
}

/// A key in Z85 text (40 characters).
pub fn z85(key: &[u8; 32]) -> String {
    zmq::z85_encode(key).unwrap_or_default()
}

fn banner(kind: &str) -> String {
    let now = crate::protocol::now_timestamp();
    format!("#   ****  Generated at {now:.0} s (Unix time) by beamline  ****\n#   ZeroMQ CURVE {kind} Certificate\n")
}

/// Writes a new key pair as `DIR/NAME.key` (public) and `DIR/NAME.key_secret` (both keys, mode 0600), never
/// overwriting either. Returns `(public file, secret file)`.
pub fn write_keypair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CurveError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(CurveError::Key {
            path: dir.join(name),
            what: "a key name is a plain file name (no `/`, not starting with `.`)".into(),
        });
    }
    let pair = KeyPair::generate()?;
    let public = dir.join(format!("{name}.key"));
    let secret = dir.join(format!("{name}.key_secret"));
    for p in [&public, &secret] {
        if p.exists() || p.is_symlink() {
            return Err(CurveError::Key { path: p.clone(), what: "exists: choose another name or remove it".into() });
        }
    }
    let pk = z85(&pair.public);
    let sk = z85(&pair.secret);
    write_new(
        &secret,
        0o600,
        &format!(
            "{}#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\nmetadata\ncurve\n    \
             public-key = \"{pk}\"\n    secret-key = \"{sk}\"\n",
            banner("**Secret**")
        ),
    )?;
    write_new(&public, 0o644, &format!("{}\nmetadata\ncurve\n    public-key = \"{pk}\"\n", banner("Public")))?;
    Ok((public, secret))
}

fn write_new(path: &Path, mode: u32, text: &str) -> Result<(), CurveError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |cause| CurveError::Io { path: path.to_path_buf(), cause };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Reads the keys of a certificate file: `(public, secret)`; the secret is `None` in a public file.
pub fn read_keys(path: &Path) -> Result<([u8; 32], Option<[u8; 32]>), CurveError> {
    let text = std::fs::read_to_string(path).map_err(|cause| CurveError::Io { path: path.to_path_buf(), cause })?;
    let bad = |what: String| CurveError::Key { path: path.to_path_buf(), what };
    let mut public = None;
    let mut secret = None;
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let slot = if line.starts_with("public-key") {
            &mut public
        } else if line.starts_with("secret-key") {
            &mut secret
        } else {
            continue;
        };
        let value = line.split_once('=').map(|(_, v)| v.trim().trim_matches(['"', '\'', ' ', '\t'])).unwrap_or("");
        let key: [u8; 32] = zmq::z85_decode(value)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad(format!("{} is not a 40-character Z85 key", &line[..10])))?;
        *slot = Some(key);
    }
    let public = public.ok_or_else(|| {
        bad("no `public-key = \"...\"` line: not a ZeroMQ certificate (make one with `beamline keys new NAME`)".into())
    })?;
    Ok((public, secret))
}

/// Reads a secret certificate (`NAME.key_secret`); refuses one that others may read.
pub fn read_secret(path: &Path) -> Result<KeyPair, CurveError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|cause| CurveError::Io { path: path.to_path_buf(), cause })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CurveError::Key {
            path: path.to_path_buf(),
            what: format!(
                "a secret key readable by others (mode {:o}): `chmod 600` it, or make a new one",
                meta.permissions().mode() & 0o777
            ),
        });
    }
    match read_keys(path)? {
        (public, Some(secret)) => Ok(KeyPair { public, secret }),
        (_, None) => Err(CurveError::Key {
            path: path.to_path_buf(),
            what: "no `secret-key` line: this is a public certificate; pass the `.key_secret` file".into(),
        }),
    }
}

/// Reads the public key of a certificate (a `.key` file, or a `.key_secret` one).
pub fn read_public(path: &Path) -> Result<[u8; 32], CurveError> {
    Ok(read_keys(path)?.0)
}

/// A receiver's CURVE settings: its own key pair and the senders it admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurveServer {
    /// The receiver's key pair.
    pub keys: KeyPair,
    /// Public keys of the admitted senders.
    pub allowed: Vec<[u8; 32]>,
}

impl CurveServer {
    /// From `--curve-secret FILE --curve-allow PUBFILE...`.
    pub fn from_files(secret: &Path, allow: &[PathBuf]) -> Result<CurveServer, CurveError> {
        need_curve()?;
        if allow.is_empty() {
            return Err(CurveError::Key {
                path: secret.to_path_buf(),
                what: "a CURVE receiver needs at least one --curve-allow PUBFILE (the senders it admits)".into(),
            });
        }
        let keys = read_secret(secret)?;
        let allowed = allow.iter().map(|p| read_public(p)).collect::<Result<_, _>>()?;
        Ok(CurveServer { keys, allowed })
    }
}

/// A sender's CURVE settings: its own key pair and the receiver's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurveClient {
    /// The sender's key pair.
    pub keys: KeyPair,
    /// The receiver's public key.
    pub server: [u8; 32],
}

impl CurveClient {
    /// From `--curve-secret FILE --curve-server PUBFILE`.
    pub fn from_files(secret: &Path, server: &Path) -> Result<CurveClient, CurveError> {
        need_curve()?;
        Ok(CurveClient { keys: read_secret(secret)?, server: read_public(server)? })
    }

    /// Makes `socket` a CURVE client (before it connects or binds).
    pub fn apply(&self, socket: &zmq::Socket) -> Result<(), CurveError> {
        socket.set_curve_serverkey(&self.server).map_err(zerr("set ZMQ_CURVE_SERVERKEY"))?;
        socket.set_curve_publickey(&self.keys.public).map_err(zerr("set ZMQ_CURVE_PUBLICKEY"))?;
        socket.set_curve_secretkey(&self.keys.secret).map_err(zerr("set ZMQ_CURVE_SECRETKEY"))
    }
}

/// What a ZAP handler decided.
#[derive(Debug, Default)]
pub struct ZapCounts {
    /// Handshakes accepted.
    pub accepted: AtomicU64,
    /// Handshakes refused (unknown key, or not CURVE).
    pub refused: AtomicU64,
    refused_keys: Mutex<HashSet<String>>,
}

impl ZapCounts {
    /// Handshakes refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Handshakes accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The distinct refused public keys (Z85), sorted.
    pub fn refused_keys(&self) -> Vec<String> {
        let mut v: Vec<String> = self.refused_keys.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        v.sort();
        v
    }
}

/// A ZAP handler (RFC 27) in a receiver's context, admitting only the listed CURVE keys; stopped when dropped.
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
    counts: Arc<ZapCounts>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ZapHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZapHandler").field("counts", &self.counts).finish()
    }
}

impl ZapHandler {
    /// Starts the handler in `ctx` and makes `socket` (of `ctx`) a CURVE server with `server`'s key. Call it
    /// before `socket` binds or connects, so that no handshake happens without the handler.
    pub fn secure(ctx: &zmq::Context, socket: &zmq::Socket, server: &CurveServer) -> Result<ZapHandler, CurveError> {
        need_curve()?;
        let zap = ctx.socket(zmq::REP).map_err(zerr("ZAP socket"))?;
        zap.set_linger(0).map_err(zerr("ZAP set_linger"))?;
        zap.set_rcvtimeo(100).map_err(zerr("ZAP set_rcvtimeo"))?;
        zap.bind(ZAP_ENDPOINT).map_err(zerr("bind the ZAP handler (is another one running in this context?)"))?;
        socket.set_curve_server(true).map_err(zerr("set ZMQ_CURVE_SERVER"))?;
        socket.set_curve_secretkey(&server.keys.secret).map_err(zerr("set ZMQ_CURVE_SECRETKEY"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(ZapCounts::default());
        let allowed: HashSet<[u8; 32]> = server.allowed.iter().copied().collect();
        let (s, c) = (stop.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name("zap".into())
            .spawn(move || zap_loop(zap, allowed, s, c))
            .map_err(|cause| CurveError::Io { path: PathBuf::from("(zap thread)"), cause })?;
        Ok(ZapHandler { stop, counts, thread: Some(thread) })
    }

    /// What the handler decided so far.
    pub fn counts(&self) -> Arc<ZapCounts> {
        self.counts.clone()
    }
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn zap_loop(zap: zmq::Socket, allowed: HashSet<[u8; 32]>, stop: Arc<AtomicBool>, counts: Arc<ZapCounts>) {
    while !stop.load(Ordering::SeqCst) {
        let req = match zap.recv_multipart(0) {
            Ok(r) => r,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                tracing::error!("ZAP handler stopped: {e}; CURVE handshakes now fail");
                return;
            }
        };
        let reply = decide(&req, &allowed, &counts);
        if let Err(e) = zap.send_multipart(reply, 0) {
            tracing::error!("ZAP handler could not reply: {e}");
        }
    }
}

/// Answers one ZAP request: `[version, request id, domain, address, routing id, mechanism, credentials...]`.
fn decide(req: &[Vec<u8>], allowed: &HashSet<[u8; 32]>, counts: &ZapCounts) -> Vec<Vec<u8>> {
    let text = |i: usize| req.get(i).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    let id = req.get(1).cloned().unwrap_or_default();
    let answer = |code: &str, why: &str| vec![b"1.0".to_vec(), id.clone(), code.into(), why.into(), vec![], vec![]];
    if req.len() < 6 || req[0] != b"1.0" {
        return answer("500", "malformed ZAP request");
    }
    let (address, mechanism) = (text(3), text(5));
    let key: Option<[u8; 32]> = req.get(6).and_then(|k| k.as_slice().try_into().ok());
    match key {
        Some(k) if mechanism == "CURVE" && allowed.contains(&k) => {
            counts.accepted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %address, key = %z85(&k), "CURVE peer admitted");
            answer("200", "OK")
        }
        _ => {
            let n = counts.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let shown = key.map_or_else(|| format!("({mechanism}, no key)"), |k| z85(&k));
            let first = counts.refused_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(shown.clone());
            if first || n <= 10 {
                tracing::warn!(peer = %address, key = %shown, refused = n, "refused a sender: its CURVE key is not listed");
            }
            answer("400", "key not allowed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zap_admits_listed_keys_only() {
        let allowed: HashSet<[u8; 32]> = [[7u8; 32]].into_iter().collect();
        let counts = ZapCounts::default();
        let req = |mech: &str, key: &[u8]| {
            vec![b"1.0".to_vec(), b"r1".to_vec(), vec![], b"127.0.0.1".to_vec(), vec![], mech.into(), key.to_vec()]
        };
        assert_eq!(decide(&req("CURVE", &[7; 32]), &allowed, &counts)[2], b"200");
        assert_eq!(decide(&req("CURVE", &[8; 32]), &allowed, &counts)[2], b"400");
        assert_eq!(decide(&req("NULL", &[]), &allowed, &counts)[2], b"400");
        assert_eq!(decide(&[b"1.0".to_vec()], &allowed, &counts)[2], b"500");
        assert_eq!((counts.accepted(), counts.refused()), (1, 2));
        assert_eq!(counts.refused_keys().len(), 2);
        assert_eq!(decide(&req("CURVE", &[7; 32]), &allowed, &counts)[1], b"r1");
    }

    #[test]
    fn key_files_round_trip_and_secret_is_private() {
        assert!(available(), "{}", CurveError::Unavailable);
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (public, secret) = write_keypair(dir.path(), "rx").unwrap();
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        let pair = read_secret(&secret).unwrap();
        assert_eq!(read_public(&public).unwrap(), pair.public);
        assert!(read_secret(&public).is_err(), "a public file is no secret");
        assert!(write_keypair(dir.path(), "rx").is_err(), "never overwritten");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret(&secret).unwrap_err().to_string().contains("chmod 600"));
    }
}
