//! Interoperability with a third-party ROS 2 stack: Eclipse Cyclone DDS (PyPI `cyclonedds`
//! 11.0.1, the default middleware of ROS 2 Jazzy) publishes `std_msgs/Float64MultiArray`
//! observations under ROS 2 topic and type naming (`rt/sdac/observation`,
//! `std_msgs::msg::dds_::Float64MultiArray_`) and receives `sdac-node`'s commands
//! (`tools/cyclone_peer.py`). Every observation must be answered with a finite command that
//! equals the runtime's action for that observation: the node draws its sampler noise from a
//! generator seeded with `--seed`, one draw per observation it acts on, so replaying the
//! answered observations in the order they were answered through `sdac_runtime::Policy` with the
//! same seed gives the same actions.

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
    let obs_path = dir.path().join("observations.json");
    let out_path = dir.path().join("answers.json");
    let sent = observations(40);
    std::fs::write(&obs_path, serde_json::to_string(&sent).unwrap()).unwrap();

    let mut node_cmd = Command::new(release_binary("sdac-node").unwrap());
    node_cmd
        .env("ROS_DOMAIN_ID", &domain)
        .arg("--policy")
        .arg(&artifact)
        .args(["--rate", "200", "--seed", &NOISE_SEED.to_string()]);
    let mut node = Spawned::start("sdac-node", node_cmd, &dir.path().join("node.log")).unwrap();

    let mut peer_cmd = Command::new(venv_python().unwrap());
    peer_cmd
        .arg(workspace_root().join("tools/cyclone_peer.py"))
        .arg("--observations")
        .arg(&obs_path)
        .arg("--out")
        .arg(&out_path)
        .args(["--domain", &domain, "--timeout-s", "60"]);
    let mut peer = Spawned::start("cyclone peer", peer_cmd, &dir.path().join("peer.log")).unwrap();
    let peer_status = peer.wait(Duration::from_secs(80)).unwrap();
    let node_status = node.terminate(Duration::from_secs(10)).unwrap();
    println!("peer:\n{}\nnode:\n{}", peer.output(), node.output());
    assert!(
        peer_status.success(),
        "the Cyclone DDS peer did not get every observation answered: {peer_status}\n{}\nnode:\n{}",
        peer.output(),
        node.output()
    );
    assert!(
        node_status.success(),
        "node: {node_status}\n{}",
        node.output()
    );

    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(result["answered"].as_u64(), Some(sent.len() as u64));
    assert_eq!(result["non_finite_commands"], 0, "{result}");
    let answers = result["answers"].as_array().unwrap();
    assert!(answers.len() >= sent.len());

    let mut policy = Policy::load(&artifact).unwrap();
    policy.reseed(NOISE_SEED);
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
