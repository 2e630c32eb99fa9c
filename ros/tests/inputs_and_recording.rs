//! The node's optional input and output over real DDS: `--joint-state` observations (mapping,
//! stamps, seeded policy), and `--record` MCAP files read back by the Python `mcap` package.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{NodeProcess, commands_since, publish_for, unique_domain, write_student};
use sdac_ros::control::ActionPolicy;
use sdac_ros::peer::{Peer, PeerTopics};
use sdac_ros::policy::RuntimePolicy;
use sdac_ros::{Float64MultiArray, Header, JointState, Time, clock, parse_stamp, qos, stamp_label};

#[test]
fn joint_states_are_observed_as_positions_then_velocities() {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = write_student(dir.path());
    let domain = unique_domain();
    // The peer's own observation publisher goes to an unused topic; joint states go to the
    // node's observation topic.
    let mut peer = Peer::start(
        domain,
        &PeerTopics {
            obs: "/unused".into(),
            ..PeerTopics::default()
        },
    )
    .unwrap();
    let joints = peer
        .publisher::<JointState>("/sdac/observation", qos::SENSOR_DATA)
        .unwrap();
    let node = NodeProcess::spawn(&policy_path, domain, &["--joint-state", "--seed", "5"]);
    assert!(peer.wait_for(Duration::from_secs(20), |r| !r.commands.is_empty()));

    let state = |k: u32| JointState {
        header: Header {
            stamp: Time {
                sec: 100,
                nanosec: k,
            },
            frame_id: String::new(),
        },
        name: vec!["a".into(), "b".into(), "c".into()],
        position: vec![0.1 * k as f64, -0.2, 0.3],
        velocity: vec![1.0, 0.5 * k as f64, -1.5],
        effort: vec![],
    };
    for k in 1..=200 {
        joints.publish(state(k)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    let commands = commands_since(&peer, 0);
    let first = commands
        .iter()
        .find_map(|c| parse_stamp(c.message.label()).map(|s| (s, c.message.data.clone())))
        .expect("a command answers a joint state");
    // The stamp is header.stamp in nanoseconds.
    let k = (first.0 - 100_000_000_000) as u32;
    assert!((1..=200).contains(&k), "stamp {}", first.0);
    // The node's first action: the same policy, seed and observation here.
    let mut policy = RuntimePolicy::load(&policy_path, 5).unwrap();
    let message = state(k);
    let obs: Vec<f32> = message
        .position
        .iter()
        .chain(&message.velocity)
        .map(|v| *v as f32)
        .collect();
    let mut action = vec![0.0f32; policy.act_dim()];
    policy.act(&obs, &mut action).unwrap();
    let expected: Vec<f64> = action.iter().map(|v| f64::from(*v)).collect();
    assert_eq!(first.1, expected);
    // Wrong length (two positions, three velocities): the safe action.
    let from = clock::monotonic_ns();
    for _ in 0..100 {
        let mut short = state(300);
        short.position.pop();
        joints.publish(short).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let late = commands_since(&peer, from + 50_000_000);
    assert!(!late.is_empty());
    assert!(late.iter().all(|c| c.message.label() == "action"));
    let (status, stderr) = node.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");
}

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: this test reads MCAP with the Python `mcap` package (`python3 -m venv \
         .cache/venv && .cache/venv/bin/pip install mcap`, or .ci/run)",
        python.display()
    );
    python
}

/// Reads an MCAP file with the `mcap` package; prints one JSON object: the header profile, and
/// per topic the schema, encodings, message count and the first message whose label carries a
/// stamp (CDR Float64MultiArray decoded by hand: label and data).
const READ_MCAP: &str = r#"
import json, struct, sys
from mcap.reader import make_reader

def float64_multi_array(payload):
    assert payload[:4] == b"\x00\x01\x00\x00", payload[:4]
    body, pos = payload[4:], 0
    def u32():
        nonlocal pos
        pos = (pos + 3) & ~3
        value = struct.unpack_from("<I", body, pos)[0]
        pos += 4
        return value
    labels = []
    for _ in range(u32()):
        n = u32()
        labels.append(body[pos:pos + n - 1].decode())
        pos += n
        u32(); u32()
    u32()
    n = u32()
    pos = (pos + 7) & ~7
    return {"label": labels[0] if labels else "",
            "data": list(struct.unpack_from("<%dd" % n, body, pos))}

with open(sys.argv[1], "rb") as f:
    reader = make_reader(f)
    out = {"profile": reader.get_header().profile, "topics": {}}
    for schema, channel, message in reader.iter_messages():
        t = out["topics"].setdefault(channel.topic, {
            "schema": schema.name, "schema_encoding": schema.encoding,
            "message_encoding": channel.message_encoding, "count": 0, "first": None,
            "definition": schema.data.decode()})
        t["count"] += 1
        if t["first"] is None and channel.topic != "/diagnostics":
            decoded = float64_multi_array(message.data)
            if ";stamp=" in decoded["label"]:
                t["first"] = decoded
print(json.dumps(out))
"#;

#[test]
fn a_recording_holds_observations_commands_and_diagnostics_readable_by_python_mcap() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let policy = write_student(dir.path());
    let record = dir.path().join("run.mcap");
    let domain = unique_domain();
    let peer = Peer::start(domain, &PeerTopics::default()).unwrap();
    let node = NodeProcess::spawn(&policy, domain, &["--record", record.to_str().unwrap()]);
    assert!(peer.wait_for(Duration::from_secs(20), |r| !r.commands.is_empty()));
    publish_for(&peer, 1000.0, 0.3, |k, stamp| {
        Float64MultiArray::vector(&stamp_label("obs", stamp), vec![0.01 * k as f64; 6])
    });
    assert!(peer.wait_for(Duration::from_secs(3), |r| !r.diagnostics.is_empty()));
    let (status, stderr) = node.stop(libc::SIGTERM);
    assert!(status.success(), "{stderr}");

    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(READ_MCAP)
        .arg(&record)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["profile"], "ros2");
    let topics = &summary["topics"];
    for (topic, schema, min_count) in [
        ("/sdac/observation", "std_msgs/msg/Float64MultiArray", 200),
        ("/sdac/command", "std_msgs/msg/Float64MultiArray", 200),
        ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", 1),
    ] {
        let t = &topics[topic];
        assert_eq!(t["schema"], schema, "{topic}");
        assert_eq!(t["schema_encoding"], "ros2msg");
        assert_eq!(t["message_encoding"], "cdr");
        assert!(t["count"].as_u64().unwrap() >= min_count, "{topic}: {t}");
    }
    // The first recorded answer is the command the peer received under the same label.
    let recorded = &topics["/sdac/command"]["first"];
    let label = recorded["label"].as_str().unwrap();
    let data: Vec<f64> = recorded["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let received = peer.received();
    let same = received
        .commands
        .iter()
        .find(|c| c.message.label() == label)
        .expect("the peer received the recorded command");
    assert_eq!(data, same.message.data);
    assert!(
        data.iter().any(|v| *v != 0.0),
        "a policy action, not the safe one"
    );
    let first_obs = &topics["/sdac/observation"]["first"];
    assert_eq!(first_obs["data"].as_array().unwrap().len(), 6);
}
