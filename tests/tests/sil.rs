//! Sim-in-the-loop over ROS 2: `sdac-sim-bridge` (MuJoCo InvertedPendulum-v5) and `sdac-node`
//! (the policy) as separate processes talking over real DDS sockets on this host, in a DDS
//! domain of the test's own. The policy is the project's own: the K=1 student distilled from the
//! fixture teacher and exported by `sdac export` (see `sdac_tests::policies`).
//!
//! The bridge steps in lockstep, so every observation is answered by exactly one policy call and
//! the node draws its sampler noise in the same order as an in-process evaluation of the same
//! artifact with the same reset seeds and noise seed; the returns must agree within 5%. The
//! bridge takes its run settings as `ros2 launch` passes them (`--ros-args`: a new name and
//! namespace, a topic remap, a parameters file).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sdac_runtime::Policy;
use sdac_sim::{Assets, make_env};
use sdac_tests::policies::student_k1_artifact;
use sdac_tests::processes::{Spawned, bridge_command, node_command, test_domain_id, venv_python};

const ENV: &str = "InvertedPendulum-v5";
const EPISODES: u32 = 3;
const ENV_SEED: u64 = 100;
const NOISE_SEED: u64 = 7;
const NODE_RATE_HZ: u32 = 1000;

/// Returns of `episodes` episodes of the artifact run in-process through the runtime on
/// sdac-sim: episode i resets with `env_seed + i`, one `act_seeded` per step from a policy
/// reseeded with `noise_seed` once (what the node does).
fn runtime_returns(artifact: &Path, env_seed: u64, noise_seed: u64, episodes: u32) -> Vec<f64> {
    let mut policy = Policy::load(artifact).unwrap();
    policy.reseed(noise_seed);
    let assets = Assets::discover().unwrap();
    let mut env = make_env(ENV, &assets).unwrap();
    let mut obs = vec![0.0; env.spec().obs_dim];
    let mut obs_f32 = vec![0.0f32; obs.len()];
    let mut action_f32 = vec![0.0f32; policy.act_dim()];
    let mut action = vec![0.0; policy.act_dim()];
    (0..episodes)
        .map(|i| {
            env.reset(Some(env_seed + u64::from(i)), &mut obs).unwrap();
            let mut total = 0.0;
            loop {
                for (o, v) in obs_f32.iter_mut().zip(&obs) {
                    *o = *v as f32;
                }
                policy.act_seeded(&obs_f32, &mut action_f32).unwrap();
                for (a, v) in action.iter_mut().zip(&action_f32) {
                    *a = f64::from(*v);
                }
                let outcome = env.step(&action, &mut obs).unwrap();
                total += outcome.reward;
                if outcome.terminated || outcome.truncated {
                    return total;
                }
            }
        })
        .collect()
}

#[test]
fn node_drives_the_bridge_with_in_process_returns() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = student_k1_artifact(dir.path()).unwrap();
    let domain = test_domain_id(0);
    let report_path = dir.path().join("bridge.json");
    let recording = dir.path().join("bridge.mcap");

    // Observations on a topic of the test's own: the node by its option, the bridge by a remap.
    let mut node_cmd = node_command(&artifact, domain, NODE_RATE_HZ, NOISE_SEED).unwrap();
    node_cmd.args(["--obs-topic", "/sil/observation"]);
    let mut node = Spawned::start("sdac-node", node_cmd, &dir.path().join("node.log")).unwrap();

    // The bridge's run settings as `ros2 launch` passes them: a parameters file with a section
    // for every node (`/**`, holding a name the bridge does not have) and one for the bridge
    // under the name it is given; a report of the wrong count or seeds fails the check below.
    let params_file = dir.path().join("sil.yaml");
    std::fs::write(
        &params_file,
        format!(
            "/**:\n  ros__parameters:\n    policy: not_the_bridges\n\
             /sil/bridge:\n  ros__parameters:\n    lockstep: true\n    episodes: {EPISODES}\n    \
             seed: {ENV_SEED}\n    diag_topic: /diagnostics\n"
        ),
    )
    .unwrap();
    let mut bridge_cmd = bridge_command(ENV, domain, &report_path).unwrap();
    bridge_cmd.arg("--record").arg(&recording).arg("--ros-args");
    bridge_cmd
        .args(["-r", "__node:=bridge", "-r", "__ns:=/sil"])
        .args(["-r", "/sdac/observation:=/sil/observation"])
        .arg("--params-file")
        .arg(&params_file);
    let mut bridge = Spawned::start(
        "sdac-sim-bridge",
        bridge_cmd,
        &dir.path().join("bridge.log"),
    )
    .unwrap();
    let status = bridge.wait(Duration::from_secs(90)).unwrap();
    assert!(
        status.success(),
        "bridge failed: {status}\n{}\nnode:\n{}",
        bridge.output(),
        node.output()
    );
    let node_status = node.terminate(Duration::from_secs(10)).unwrap();
    println!("bridge:\n{}\nnode:\n{}", bridge.output(), node.output());
    assert!(
        node_status.success(),
        "node: {node_status}\n{}",
        node.output()
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let bridge_returns: Vec<f64> = report["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["return"].as_f64().unwrap())
        .collect();
    let expected = runtime_returns(&artifact, ENV_SEED, NOISE_SEED, EPISODES);
    println!("sim-in-the-loop returns {bridge_returns:?}, in-process runtime {expected:?}");
    assert_eq!(bridge_returns.len(), expected.len());
    for (i, (got, want)) in bridge_returns.iter().zip(&expected).enumerate() {
        assert!(
            (got - want).abs() <= 0.05 * want.abs(),
            "episode {i}: return {got} over ROS 2, {want} in process"
        );
    }
    // Every command the bridge received was finite and of the right length.
    assert_eq!(report["bad_commands"], 0, "{report}");
    assert_eq!(report["command_timeouts"], 0, "{report}");
    let latency = &report["command_latency"];
    let steps = report["steps"].as_u64().unwrap();
    assert_eq!(latency["count"].as_u64().unwrap(), steps - 1, "{report}");
    let p99_us = latency["p99_us"].as_f64().unwrap();
    assert!(p99_us.is_finite() && p99_us > 0.0, "{report}");
    // The node reported its deadline misses on /diagnostics while it ran; the bridge kept the
    // newest report.
    let diagnostic = |key: &str| -> u64 {
        report["controller_diagnostics"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} from the node in {report}"))
            .parse()
            .unwrap()
    };
    let deadline_misses = diagnostic("deadline_misses_total");
    let overruns = diagnostic("deadline_misses_overrun_total");
    let late_wakeups = diagnostic("deadline_misses_late_wakeup_total");
    // Every miss has exactly one cause.
    assert_eq!(overruns + late_wakeups, deadline_misses, "{report}");
    println!(
        "node deadline misses {deadline_misses} ({overruns} overrun, {late_wakeups} late wake-up); bridge obs->command latency p50 {} us p99 {p99_us} us max {} us",
        latency["p50_us"], latency["max_us"]
    );

    // The recording holds every observation published and every command received.
    let counts = mcap_message_counts(&recording);
    let published = report["observations_published"].as_u64().unwrap();
    let commands = report["commands_received"].as_u64().unwrap()
        + report["unmatched_commands"].as_u64().unwrap();
    assert_eq!(
        counts,
        vec![
            ("/sdac/command".to_owned(), commands),
            ("/sil/observation".to_owned(), published)
        ]
    );
}

/// `(topic, messages)` of each channel of an MCAP file, read back by the Python `mcap` package;
/// every channel must carry CDR under a `ros2msg` schema named `std_msgs/msg/Float64MultiArray`.
fn mcap_message_counts(path: &Path) -> Vec<(String, u64)> {
    const READER: &str = "
import collections, json, sys
from mcap.reader import make_reader
counts = collections.Counter()
with open(sys.argv[1], 'rb') as f:
    for schema, channel, _message in make_reader(f).iter_messages():
        assert channel.message_encoding == 'cdr', channel.message_encoding
        assert schema.encoding == 'ros2msg', schema.encoding
        assert schema.name == 'std_msgs/msg/Float64MultiArray', schema.name
        counts[channel.topic] += 1
print(json.dumps(sorted(counts.items())))
";
    let output = Command::new(venv_python().unwrap())
        .args(["-c", READER])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "reading {} back: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
