//! Interoperability with a third-party ROS 2 stack: Eclipse Cyclone DDS (PyPI `cyclonedds`
//! 11.0.1, the default middleware of ROS 2 Jazzy) publishes `std_msgs/Float64MultiArray`
//! observations under ROS 2 topic and type naming (`rt/sdac/observation`,
//! `std_msgs::msg::dds_::Float64MultiArray_`) and receives `sdac-node`'s commands
//! (`tools/cyclone_peer.py`). Every observation must be answered with a finite command that
//! equals the runtime's action for that observation: the node draws its sampler noise from a
//! generator seeded with `--seed`, one draw per observation it acts on, so replaying the
//! answered observations in the order they were answered through `sdac_runtime::Policy` with the
//! same seed gives the same actions.
//!
//! The second test starts the node as `ros2 launch` would (`--ros-args`: a new name and
//! namespace, a parameters file, a `-p` override, a topic remap), reads its parameters back
//! through the rcl_interfaces parameter services from Cyclone DDS (`tools/cyclone_params.py`, the
//! calls `ros2 param list|get|set` makes), and drives it on the remapped topic.

use std::process::Command;
use std::time::Duration;

use sdac_runtime::Policy;
use sdac_sim::{Assets, make_env};
use sdac_tests::policies::student_k1_artifact;
use sdac_tests::processes::{Spawned, release_binary, test_domain_id, venv_python};
use sdac_tests::workspace_root;

const NOISE_SEED: u64 = 11;

/// Observations of InvertedPendulum-v5 as a controller sees them: a few resets, each followed
/// by steps with a small constant push.
fn observations(count: usize) -> Vec<Vec<f64>> {
    let assets = Assets::discover().unwrap();
    let mut env = make_env("InvertedPendulum-v5", &assets).unwrap();
    let mut obs = vec![0.0; env.spec().obs_dim];
    let mut out = Vec::with_capacity(count);
    let mut seed = 0;
    while out.len() < count {
        env.reset(Some(seed), &mut obs).unwrap();
        seed += 1;
        for _ in 0..8 {
            out.push(obs.clone());
            let outcome = env.step(&[0.3], &mut obs).unwrap();
            if outcome.terminated || outcome.truncated || out.len() == count {
                break;
            }
        }
    }
    out
}

#[test]
fn cyclone_dds_peer_gets_the_runtimes_actions_from_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = student_k1_artifact(dir.path()).unwrap();
    let domain = test_domain_id(1).to_string();
    let sent = observations(40);

    let mut node_cmd = Command::new(release_binary("sdac-node").unwrap());
    node_cmd
        .env("ROS_DOMAIN_ID", &domain)
        .arg("--policy")
        .arg(&artifact)
        .args(["--rate", "200", "--seed", &NOISE_SEED.to_string()]);
    let mut node = Spawned::start("sdac-node", node_cmd, &dir.path().join("node.log")).unwrap();
    let result = run_cyclone_peer(dir.path(), &domain, &sent, &[], &node);
    stop_node(&mut node);
    assert_eq!(result["answered"].as_u64(), Some(sent.len() as u64));
    assert_eq!(result["non_finite_commands"], 0, "{result}");
    let answers = result["answers"].as_array().unwrap();
    assert!(answers.len() >= sent.len());
    assert_answers_are_the_runtimes(&artifact, answers, NOISE_SEED);
}

/// Replays the answered observations, in the order they were answered, through the runtime
/// seeded with `seed`: each answer must be the runtime's action.
fn assert_answers_are_the_runtimes(
    artifact: &std::path::Path,
    answers: &[serde_json::Value],
    seed: u64,
) {
    let mut policy = Policy::load(artifact).unwrap();
    policy.reseed(seed);
    let mut expected = vec![0.0f32; policy.act_dim()];
    for (i, answer) in answers.iter().enumerate() {
        let obs: Vec<f32> = answer["obs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let action: Vec<f64> = answer["action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        policy.act_seeded(&obs, &mut expected).unwrap();
        assert_eq!(action.len(), expected.len(), "answer {i}: {answer}");
        for (got, want) in action.iter().zip(&expected) {
            assert!(
                got.is_finite()
                    && (got - f64::from(*want)).abs() <= 1e-6 * f64::from(want.abs()).max(1.0),
                "answer {i}: node sent {action:?}, the runtime computes {expected:?} for {obs:?}"
            );
        }
    }
}

/// Stops the node with SIGTERM; it must exit cleanly.
fn stop_node(node: &mut Spawned) {
    let node_status = node.terminate(Duration::from_secs(10)).unwrap();
    assert!(
        node_status.success(),
        "node: {node_status}\n{}",
        node.output()
    );
}

/// Runs `tools/cyclone_peer.py` on `domain` with `observations`; returns its JSON result.
fn run_cyclone_peer(
    dir: &std::path::Path,
    domain: &str,
    observations: &[Vec<f64>],
    extra: &[&str],
    node: &Spawned,
) -> serde_json::Value {
    let obs_path = dir.join("observations.json");
    let out_path = dir.join("answers.json");
    std::fs::write(&obs_path, serde_json::to_string(observations).unwrap()).unwrap();
    let mut peer_cmd = Command::new(venv_python().unwrap());
    peer_cmd
        .arg(workspace_root().join("tools/cyclone_peer.py"))
        .arg("--observations")
        .arg(&obs_path)
        .arg("--out")
        .arg(&out_path)
        .args(["--domain", domain, "--timeout-s", "60"])
        .args(extra);
    let mut peer = Spawned::start("cyclone peer", peer_cmd, &dir.join("peer.log")).unwrap();
    let peer_status = peer.wait(Duration::from_secs(80)).unwrap();
    println!("peer:\n{}", peer.output());
    assert!(
        peer_status.success(),
        "the Cyclone DDS peer did not get every observation answered: {peer_status}\n{}\nnode:\n{}",
        peer.output(),
        node.output()
    );
    serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap()
}

#[test]
fn cyclone_dds_reads_the_parameters_of_a_node_started_with_ros_args() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = student_k1_artifact(dir.path()).unwrap();
    let domain = test_domain_id(2).to_string();
    // As ros2 launch writes them: a section every node reads (with a parameter this node does
    // not have, which it ignores), and one for this node by its fully qualified name.
    let params_file = dir.path().join("params.yaml");
    std::fs::write(
        &params_file,
        format!(
            "/**:\n  ros__parameters:\n    use_sim_time: false\n    some_shared_setting: 3\n\
             /robot/pendulum:\n  ros__parameters:\n    rate: 200.0\n    seed: {NOISE_SEED}\n"
        ),
    )
    .unwrap();
    let mut node_cmd = Command::new(release_binary("sdac-node").unwrap());
    node_cmd
        .env("ROS_DOMAIN_ID", &domain)
        .arg("--policy")
        .arg(&artifact)
        .args(["--ros-args", "-r", "__node:=pendulum", "-r", "__ns:=/robot"])
        .arg("--params-file")
        .arg(&params_file)
        .args(["-p", "safe_action:=hold", "-r", "/sdac/command:=/robot/cmd"]);
    let mut node = Spawned::start("sdac-node", node_cmd, &dir.path().join("node.log")).unwrap();

    let params_out = dir.path().join("params.json");
    let mut client_cmd = Command::new(venv_python().unwrap());
    client_cmd
        .arg(workspace_root().join("tools/cyclone_params.py"))
        .args(["--node", "/robot/pendulum", "--set", "rate=100", "--out"])
        .arg(&params_out)
        .args(["--domain", &domain, "--timeout-s", "60"]);
    let mut client =
        Spawned::start("cyclone params", client_cmd, &dir.path().join("params.log")).unwrap();
    let client_status = client.wait(Duration::from_secs(80)).unwrap();
    assert!(
        client_status.success(),
        "parameter services: {client_status}\n{}\nnode:\n{}",
        client.output(),
        node.output()
    );
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&params_out).unwrap()).unwrap();
    let names: Vec<&str> = params["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for name in [
        "policy",
        "rate",
        "obs_topic",
        "cmd_topic",
        "diag_topic",
        "obs_timeout_ms",
        "safe_action",
        "seed",
        "joint_state",
        "record",
        "cpu",
        "dds_cpu",
        "spin_us",
        "idle_poll",
        "use_sim_time",
    ] {
        assert!(names.contains(&name), "{name} not listed: {params}");
    }
    assert!(!names.contains(&"some_shared_setting"), "{params}");
    let values = &params["values"];
    assert_eq!(values["rate"], 200.0, "{params}");
    assert_eq!(values["seed"], NOISE_SEED, "{params}");
    assert_eq!(values["safe_action"], "hold", "{params}");
    assert_eq!(values["cmd_topic"], "/robot/cmd", "{params}");
    assert_eq!(values["obs_topic"], "/sdac/observation", "{params}");
    assert_eq!(values["obs_timeout_ms"], 20.0, "{params}");
    // Read-only: the node runs with what it started with.
    assert_eq!(params["set"]["successful"], false, "{params}");
    assert!(
        params["set"]["reason"]
            .as_str()
            .unwrap()
            .contains("read at start only"),
        "{params}"
    );

    // Commands come on the remapped topic, with the noise seed from the parameters file.
    let sent = observations(10);
    let result = run_cyclone_peer(
        dir.path(),
        &domain,
        &sent,
        &["--cmd-topic", "rt/robot/cmd"],
        &node,
    );
    stop_node(&mut node);
    assert_eq!(result["answered"].as_u64(), Some(sent.len() as u64));
    assert_eq!(result["non_finite_commands"], 0, "{result}");
    assert_answers_are_the_runtimes(&artifact, result["answers"].as_array().unwrap(), NOISE_SEED);
}
