//! Batch reconstruction with the real Slurm: a one-node cluster (munged, slurmctld, slurmd from Debian's
//! `slurm-wlm` and `munge`, every path in a scratch folder, loopback only) runs the job-array and merge
//! scripts that the README shows (`scripting/examples/slurm/`), and the merged volume must equal a
//! single-process `beamline recon` bit for bit. A failed array task keeps the merge job from starting
//! (`afterok`), the merge script run by hand refuses naming the missing part, and rerunning that one part
//! with `sbatch --array=I` lets the merge succeed.
//!
//! Slurm is required, never skipped: without it the test fails and says to run `.ci/setup`.

#[path = "scaleout_util.rs"]
mod util;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tests::beamline_bin;
use util::{acquire, ok, text};

const SIZE: u32 = 40;
const ANGLES: u32 = 45;
const PARTS: usize = 4;
/// The longest a batch of jobs may take before the test gives up (they take seconds).
const JOB_LIMIT: Duration = Duration::from_secs(90);

/// The Slurm and MUNGE programs the test needs, found on PATH or in /usr/sbin.
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: Slurm is required for this test. Run .ci/setup (or `make test`), which \
                 installs Debian's slurm-wlm, slurm-client and munge"
            )
        })
}

fn free_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")
}

/// The workspace root of this test's sources (the `tests` library's may have been built elsewhere).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests crate sits inside the workspace").to_path_buf()
}

fn example(name: &str) -> PathBuf {
    workspace_root().join("scripting/examples/slurm").join(name)
}

/// A one-node Slurm cluster in a scratch folder; dropping it shuts the daemons down by pid, also when the
/// test fails.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// PATH with the folder of the `beamline` binary first.
    path_env: std::ffi::OsString,
    munged: Option<Child>,
    slurmctld: Option<Child>,
    slurmd: Option<Child>,
}

impl Cluster {
    fn start() -> Cluster {
        // Fail first, and clearly, when Slurm is not installed.
        for name in ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo"] {
            program(name);
        }
        // Short path: the MUNGE socket path must fit a Unix socket address.
        let dir = tempfile::Builder::new().prefix("bl-slurm").tempdir_in("/tmp").expect("scratch folder");
        let d = dir.path().to_path_buf();
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir(d.join(sub)).expect("scratch subfolder");
        }
        let mut key = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).expect("random MUNGE key");
        let key_path = d.join("munge.key");
        std::fs::write(&key_path, key).expect("write munge key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("key permissions");

        let user =
            String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id -un").stdout).trim().to_string();
        let (ctld, node) = (free_port(), free_port());
        let (ctld_port, node_port) = (ctld.local_addr().expect("port").port(), node.local_addr().expect("port").port());
        drop((ctld, node));
        let p = |s: &str| d.join(s).display().to_string();
        let conf = format!(
            "ClusterName=beamline-test\nSlurmctldHost=localhost\nSlurmUser={user}\nSlurmdUser={user}\n\
             AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={sock}\n\
             SlurmctldPort={ctld_port}\nSlurmdPort={node_port}\n\
             StateSaveLocation={state}\nSlurmdSpoolDir={spool}\n\
             SlurmctldPidFile={ctld_pid}\nSlurmdPidFile={node_pid}\n\
             SlurmctldLogFile={ctld_log}\nSlurmdLogFile={node_log}\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n\
             AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none\n\
             JobCompType=jobcomp/filetxt\nJobCompLoc={jobcomp}\n\
             SchedulerType=sched/backfill\nSchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=0\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
             CommunicationParameters=NoCtldInAddrAny,NoInAddrAny\nReturnToService=2\n\
             GresTypes=gpu\n\
             NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 Gres=gpu:2 State=UNKNOWN\n\
             PartitionName=batch Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
            sock = p("munge.sock"),
            state = p("state"),
            spool = p("spool"),
            ctld_pid = p("slurmctld.pid"),
            node_pid = p("slurmd.pid"),
            ctld_log = p("log/slurmctld.log"),
            node_log = p("log/slurmd.log"),
            jobcomp = p("log/jobcomp.txt"),
        );
        let conf_path = d.join("slurm.conf");
        std::fs::write(&conf_path, conf).expect("write slurm.conf");
        // Two stand-in GPUs (any two device files do), so that the scripts' --gres=gpu:1 is satisfied and
        // Slurm sets CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS for each task as on a GPU node.
        std::fs::write(d.join("gres.conf"), "Name=gpu File=/dev/null\nName=gpu File=/dev/zero\n").expect("gres.conf");

        let log = |name: &str| std::fs::File::create(d.join("log").join(name)).expect("daemon log");
        let spawn = |cmd: &mut Command, name: &str| -> Child {
            cmd.env("SLURM_CONF", &conf_path)
                .stdin(Stdio::null())
                .stdout(log(name))
                .stderr(log(&format!("{name}.err")))
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"))
        };
        let bin_dir = beamline_bin().parent().expect("binary folder").to_path_buf();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path_env = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path)))
            .expect("PATH with the beamline binary first");
        let mut cluster =
            Cluster { dir, conf: conf_path.clone(), path_env, munged: None, slurmctld: None, slurmd: None };
        cluster.munged = Some(spawn(
            Command::new(program("munged"))
                .args(["--foreground", "--force"])
                .arg(format!("--socket={}", p("munge.sock")))
                .arg(format!("--key-file={}", key_path.display()))
                .arg(format!("--pid-file={}", p("munged.pid")))
                .arg(format!("--log-file={}", p("log/munged.log")))
                .arg(format!("--seed-file={}", p("munged.seed"))),
            "munged.out",
        ));
        cluster.wait_for("the MUNGE socket", Duration::from_secs(10), |c| c.path().join("munge.sock").exists());
        cluster.slurmctld =
            Some(spawn(Command::new(program("slurmctld")).arg("-D").arg("-f").arg(&conf_path), "slurmctld.out"));
        cluster.slurmd = Some(spawn(
            Command::new(program("slurmd")).args(["-D", "-N", "localhost", "-f"]).arg(&conf_path),
            "slurmd.out",
        ));
        cluster.wait_for("the node to be idle", Duration::from_secs(20), |c| {
            c.slurm("sinfo", &["-h", "-o", "%T"]).is_ok_and(|s| s.trim() == "idle")
        });
        cluster
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a Slurm client in the scratch folder; its stdout, or an error with its output.
    fn slurm(&self, name: &str, args: &[&str]) -> Result<String, String> {
        // sbatch exports this environment to the jobs: PATH finds `beamline` there.
        let out = Command::new(program(name))
            .args(args)
            .current_dir(self.path())
            .env("SLURM_CONF", &self.conf)
            .env("PATH", &self.path_env)
            .output()
            .map_err(|e| format!("start {name}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{name} {args:?}: {}", text(&out)))
        }
    }

    /// `sbatch --parsable --cpus-per-task=1 ARGS`: the job id. (The scripts ask for 8 CPUs and a GPU per
    /// task; this node has 2 CPUs and two stand-in GPUs; options given to sbatch override the scripts'.)
    fn sbatch(&self, args: &[&str]) -> String {
        let mut all = vec!["--parsable", "--cpus-per-task=1"];
        all.extend_from_slice(args);
        let out = self.slurm("sbatch", &all).unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        out.trim().split(';').next().unwrap_or_default().to_string()
    }

    /// Polls until `done` holds, failing with the daemon logs after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Cluster) -> bool) {
        let t0 = Instant::now();
        while !done(self) {
            assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `squeue` lines (`ID STATE REASON`) for the jobs given; empty when all have left the queue.
    fn queued(&self, jobs: &[&str]) -> String {
        let list = jobs.join(",");
        self.slurm("squeue", &["-h", "-j", &list, "-o", "%i %T %r"]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `(array task id or -, JobState)` for every job of `job` (one per array task).
    fn states(&self, job: &str) -> Vec<(String, String)> {
        let out = self.slurm("scontrol", &["-o", "show", "job", job]).unwrap_or_else(|e| panic!("{e}"));
        let field = |line: &str, key: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or("-").to_string()
        };
        let mut v: Vec<_> = out.lines().map(|l| (field(l, "ArrayTaskId="), field(l, "JobState="))).collect::<Vec<_>>();
        v.sort();
        v
    }

    /// Waits until none of `jobs` is queued or running.
    fn wait_done(&self, jobs: &[&str]) {
        self.wait_for(&format!("jobs {jobs:?} to finish"), JOB_LIMIT, |c| c.queued(jobs).trim().is_empty());
    }

    /// The daemon and job logs, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        let mut files: Vec<PathBuf> = ["log", "."]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.path().join(sub)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "log" || e == "err" || e == "out"))
            .collect();
        files.sort();
        for f in files {
            let t = std::fs::read_to_string(&f).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            s.push_str(&format!("--- {} (last lines)\n", f.display()));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// Waits up to `limit` for `child` to exit; kills it after that.
fn stop(child: &mut Child, limit: Duration) {
    let t0 = Instant::now();
    while matches!(child.try_wait(), Ok(None)) && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // `scontrol shutdown` stops slurmctld and slurmd; whatever is left is killed by pid.
        if self.slurmctld.is_some() {
            let _ = self.slurm("scontrol", &["shutdown"]);
        }
        for child in [self.slurmd.as_mut(), self.slurmctld.as_mut()].into_iter().flatten() {
            stop(child, Duration::from_secs(5));
        }
        if let Some(m) = self.munged.as_mut() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

fn volume(path: &Path) -> (Vec<usize>, Vec<u32>) {
    let f = hdf5::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let ds = f.dataset("/entry/data/data").expect("volume dataset");
    let v: Vec<f32> = ds.read_raw().expect("read volume");
    (ds.shape(), v.into_iter().map(f32::to_bits).collect())
}

fn assert_same_volume(a: &Path, b: &Path) {
    let (shape_a, va) = volume(a);
    let (shape_b, vb) = volume(b);
    assert_eq!(shape_a, vec![SIZE as usize; 3]);
    assert_eq!(shape_a, shape_b);
    let differing = va.iter().zip(&vb).filter(|(x, y)| x != y).count();
    assert_eq!(differing, 0, "{differing} voxels differ between {} and {}", a.display(), b.display());
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn readme_shows_the_scripts_this_test_submits() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    for name in ["recon-array.sbatch", "recon-merge.sbatch"] {
        let script = std::fs::read_to_string(example(name)).expect("example script");
        assert!(readme.contains(&script), "README.md must include scripting/examples/slurm/{name} verbatim");
    }
}

#[test]
fn job_array_and_merge_equal_one_process_and_a_failed_part_can_be_rerun() {
    let cluster = Cluster::start();
    let d = cluster.path().to_path_buf();
    let (array, merge) = (example("recon-array.sbatch"), example("recon-merge.sbatch"));
    let (array, merge) = (s(&array), s(&merge));
    let parts = PARTS.to_string();

    let scan = acquire(&d, "scan", SIZE, ANGLES);
    let single = d.join("single.h5");
    ok(&["recon", s(&scan), "-o", s(&single), "--format", "h5", "--center", "auto", "--quiet"]);

    // Every part as one array, the merge once all succeeded.
    let job = cluster.sbatch(&[format!("--array=1-{PARTS}").as_str(), array, s(&scan), "parts", &parts]);
    let merge_job = cluster.sbatch(&[format!("--dependency=afterok:{job}").as_str(), merge, "parts", "merged.h5"]);
    cluster.wait_done(&[&job, &merge_job]);
    let states = cluster.states(&job);
    assert_eq!(states.len(), PARTS, "{states:?}");
    assert!(states.iter().all(|(_, st)| st == "COMPLETED"), "array tasks: {states:?}\n{}", cluster.logs());
    assert_eq!(cluster.states(&merge_job), vec![("-".to_string(), "COMPLETED".to_string())], "{}", cluster.logs());
    assert_same_volume(&single, &d.join("merged.h5"));

    // Task 3 gets a bad argument (a scan that does not exist) and fails; the others succeed.
    let job = cluster.sbatch(&["--array=1,2,4", array, s(&scan), "parts2", &parts]);
    let bad = cluster.sbatch(&["--array=3", array, "absent.h5", "parts2", &parts]);
    let merge_job =
        cluster.sbatch(&[format!("--dependency=afterok:{job}:{bad}").as_str(), merge, "parts2", "merged2.h5"]);
    cluster.wait_done(&[&job, &bad]);
    assert_eq!(cluster.states(&bad), vec![("3".to_string(), "FAILED".to_string())], "{}", cluster.logs());
    // afterok: the merge never starts.
    cluster.wait_for("the merge to be held", Duration::from_secs(20), |c| {
        c.queued(&[&merge_job]).contains("DependencyNeverSatisfied")
    });
    cluster.slurm("scancel", &[&merge_job]).unwrap_or_else(|e| panic!("{e}"));
    // The merge script run by hand refuses and names the missing part.
    let out: Output = Command::new("bash")
        .args([merge, "parts2", "merged2.h5"])
        .current_dir(&d)
        .env("PATH", &cluster.path_env)
        .output()
        .expect("run the merge script");
    assert!(!out.status.success(), "merging without part 3 must fail: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("part(s) 3/{PARTS} missing")), "{}", text(&out));
    assert!(!d.join("merged2.h5").exists(), "a refused merge writes no volume");

    // Part 3 alone, rerun as a one-task array; then the merge succeeds.
    let rerun = cluster.sbatch(&["--array=3", array, s(&scan), "parts2", &parts]);
    let merge_job = cluster.sbatch(&[format!("--dependency=afterok:{rerun}").as_str(), merge, "parts2", "merged2.h5"]);
    cluster.wait_done(&[&rerun, &merge_job]);
    assert_eq!(cluster.states(&rerun), vec![("3".to_string(), "COMPLETED".to_string())], "{}", cluster.logs());
    assert_eq!(cluster.states(&merge_job), vec![("-".to_string(), "COMPLETED".to_string())], "{}", cluster.logs());
    assert_same_volume(&single, &d.join("merged2.h5"));
}
