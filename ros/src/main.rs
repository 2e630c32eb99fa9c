//! `sdac-node`: being written (issue 5); this placeholder refuses to run.
fn main() -> std::process::ExitCode {
    eprintln!("sdac-node: the policy node is not built yet");
    std::process::ExitCode::from(2)
}
