//! A backend the balancer spawns is shown by its fleet name (`worker-1`...) next to its
//! address: `/status` gives each server a `"name"`, `null` for a server given by address.
//! (The dashboard's rendering of it is in `dashboard.rs`.)

use crate::util::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::time::Duration;

/// `port: 0`, one server by address, `worker: 2` from a free pair of ports, an admin port.
pub fn mixed_fleet(name: &str, plain: u16) -> (Lb, u16) {
    let first = free_ports(2);
    let file = temp_dir(name).join("fleet.yaml");
    let text = format!("port: 0\nservers: [\"127.0.0.1:{plain}\"]\nworker: 2\nworker-port: {first}\nadmin: 0\n");
    std::fs::write(&file, text).unwrap();
    (balancer_with(&["--config", file.to_str().unwrap()]), first)
}

/// Stops the balancer with SIGTERM and checks its spawned backends went with it.
pub fn stop_fleet(mut lb: Lb) {
    let pids: Vec<i32> = ["worker-1", "worker-2"]
        .iter()
        .map(|w| {
            let line = logged(&lb.proc, &format!("{w} started (pid "))
                .unwrap_or_else(|| panic!("no '{w} started' line:\n{}", lb.proc.stderr()));
            started_pid(&line)
        })
        .collect();
    lb.proc.signal(Signal::SIGTERM);
    let st = lb.proc.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "{st}; stderr:\n{}", lb.proc.stderr());
    for pid in pids {
        assert!(wait_gone(pid, Duration::from_secs(5)), "spawned backend {pid} still runs:\n{}", lb.proc.stderr());
    }
}

#[test]
fn status_names_the_spawned_backends() {
    let plain = backend(&["--name", "plain"]);
    let (lb, first) = mixed_fleet("names-status", plain.port);
    let st = status(lb.admin.unwrap());
    let servers: Vec<(Value, Value)> =
        st["servers"].as_array().unwrap().iter().map(|s| (s["address"].clone(), s["name"].clone())).collect();
    let addr = |p: u16| json!(format!("127.0.0.1:{p}"));
    assert_eq!(
        servers,
        [(addr(plain.port), Value::Null), (addr(first), json!("worker-1")), (addr(first + 1), json!("worker-2"))],
        "{st}"
    );
    // The key is there, as null, for a server given by address (the document's shape is fixed).
    assert!(st["servers"][0].as_object().unwrap().contains_key("name"), "{st}");
    stop_fleet(lb);
}
