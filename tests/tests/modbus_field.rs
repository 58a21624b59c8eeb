//! Modbus field devices through the real agent and central: the agent polls
//! a simulated moisture analyzer and light controller over Modbus TCP,
//! shows their values and health on its API, writes a coil on command, and
//! a point marked `record` reaches central's field values exactly as read.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use valeo_drivers::modbus::sim::{SimBank, SimDevice, Tables, serve_tcp};
use valeo_system_tests::{Central, Edge, eventually, get_json, start_pair};

fn tables(holding: &[(u16, u16)], coils: &[(u16, bool)]) -> Tables {
    Tables {
        holding_registers: holding.iter().copied().collect::<BTreeMap<_, _>>(),
        coils: coils.iter().copied().collect(),
        ..Tables::default()
    }
}

fn agent_tables(address: &str) -> String {
    format!(
        r#"
[simulation]
enabled = true

[[modbus]]
id = "tcp-gw"
[modbus.transport]
kind = "tcp"
address = "{address}"

[[modbus.devices]]
id = "moisture"
unit = 7
address_base = 1
poll_interval_ms = 100
[[modbus.devices.points]]
name = "moisture"
table = "holding_register"
address = 1
type = "u16"
scale = 0.1
unit = "%"
deadband = 0.05
record = true

[[modbus.devices]]
id = "lights"
unit = 2
address_base = 0
poll_interval_ms = 100
[[modbus.devices.points]]
name = "red"
table = "coil"
address = 0
type = "bool"
access = "rw"
[[modbus.devices.points]]
name = "barrier"
table = "coil"
address = 1
type = "bool"
"#
    )
}

/// Central with its embedded broker and box `field-box` with `config`, in
/// a fresh directory (kept alive by the caller).
async fn start_box(config: &str) -> (tempfile::TempDir, Central, Edge) {
    let dir = tempfile::tempdir().unwrap();
    let (central, edge) = start_pair(dir.path(), "field-box", config).await.unwrap();
    (dir, central, edge)
}

async fn post(url: String, body: Value) -> (u16, Value) {
    post_with(&reqwest::Client::new(), url, body).await
}

/// [`post`] with a given client: central's authenticated one.
async fn post_with(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = http.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_values_are_polled_written_and_recorded_at_central() {
    let moisture = SimDevice::new(7, tables(&[(0, 142)], &[]));
    let lights = SimDevice::new(2, tables(&[], &[(0, false), (1, true)]));
    let (addr, _server) = serve_tcp(
        "127.0.0.1:0",
        SimBank::new(vec![moisture.clone(), lights.clone()]),
    )
    .await
    .unwrap();
    let (_dir, central, edge) = start_box(&agent_tables(&addr.to_string())).await;
    let http = central.http();

    let modbus_url = format!("{}/api/v1/modbus", edge.http_url);
    let lines = eventually("modbus values at the box", Duration::from_secs(15), || {
        let (http, url) = (http.clone(), modbus_url.clone());
        async move {
            get_json(&http, &url).await.filter(|l| {
                l[0]["devices"][0]["points"]["moisture"]["quality"] == "good"
                    && l[0]["devices"][1]["points"]["red"]["quality"] == "good"
            })
        }
    })
    .await
    .unwrap();
    let moisture_reading = &lines[0]["devices"][0]["points"]["moisture"];
    assert!(
        (moisture_reading["value"].as_f64().unwrap() - 14.2).abs() < 1e-9,
        "{lines}"
    );
    assert_eq!(lines[0]["devices"][1]["health"]["success_rate"], 1.0);

    // A command from the terminal: the light goes red on the device.
    let (status, _) = post(
        format!("{}/api/v1/modbus/lights/red", edge.http_url),
        json!({"value": true, "by": "terminal:Anna"}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(lights.coil(0), Some(true));
    let (status, problem) = post(
        format!("{}/api/v1/modbus/lights/barrier", edge.http_url),
        json!({"value": false}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("read-only"),
        "{problem}"
    );
    let (status, problem) = post(
        format!("{}/api/v1/modbus/silo/level", edge.http_url),
        json!({"value": 1}),
    )
    .await;
    assert_eq!(status, 404, "{problem}");

    // The analyzer measures a new sample: the record reaches central.
    moisture.set_holding(0, 157);
    let url = format!(
        "{}/api/v1/field-values?device_id=field-box",
        central.http_url
    );
    let values = eventually(
        "the recorded moisture at central",
        Duration::from_secs(20),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                get_json(&http, &url).await.filter(|v| {
                    v.as_array().is_some_and(|a| {
                        a.iter().any(|f| {
                            f["point"] == "moisture"
                                && (f["value"].as_f64().unwrap_or(0.0) - 15.7).abs() < 1e-9
                        })
                    })
                })
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(values[0]["field_device"], "moisture", "{values}");
    assert_eq!(values[0]["unit"], "%");
    assert_eq!(
        values.as_array().unwrap().len(),
        1,
        "only the point marked record: {values}"
    );

    let metrics = reqwest::get(format!("{}/metrics", edge.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("valeo_edge_modbus_requests_total{device=\"lights\"}"),
        "{metrics}"
    );
}

/// The light controller of the command test: two lamps driven by the site
/// interlock and a yard lamp anyone may switch.
fn agent_with_interlocked_lights(address: &str) -> String {
    format!(
        r#"
[simulation]
enabled = true

[[modbus]]
id = "tcp-gw"
[modbus.transport]
kind = "tcp"
address = "{address}"

[[modbus.devices]]
id = "lights"
unit = 2
address_base = 0
poll_interval_ms = 100
[[modbus.devices.points]]
name = "entry_red"
table = "coil"
address = 0
type = "bool"
access = "rw"
[[modbus.devices.points]]
name = "entry_green"
table = "coil"
address = 1
type = "bool"
access = "rw"
[[modbus.devices.points]]
name = "yard_lamp"
table = "coil"
address = 2
type = "bool"
access = "rw"

[site_io]
[site_io.entry_light]
red = {{ kind = "modbus", device = "lights", point = "entry_red" }}
green = {{ kind = "modbus", device = "lights", point = "entry_green" }}
"#
    )
}

/// Sends a command through central and waits until the box has reported
/// its result; returns the finished command.
async fn command_through_central(central: &Central, action: Value) -> Value {
    let central_url = &central.http_url;
    let (status, command) = post_with(
        &central.http(),
        format!("{central_url}/api/v1/devices/field-box/commands"),
        json!({"action": action, "requested_by": "office:Ben", "ttl_ms": 60000}),
    )
    .await;
    assert_eq!(status, 202, "{command}");
    assert_eq!(command["status"], "pending", "{command}");
    let url = format!(
        "{central_url}/api/v1/commands/{}",
        command["command_id"].as_str().unwrap()
    );
    let http = central.http();
    eventually("the command's result", Duration::from_secs(20), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            get_json(&http, &url)
                .await
                .filter(|c| c["status"] != "pending")
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_sees_live_values_and_commands_reach_the_device_but_not_the_interlock() {
    let lights = SimDevice::new(2, tables(&[], &[(0, false), (1, false), (2, false)]));
    let (addr, _server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![lights.clone()]))
        .await
        .unwrap();
    let (_dir, central, edge) = start_box(&agent_with_interlocked_lights(&addr.to_string())).await;
    let http = central.http();

    // The interlock drives the entry light over Modbus: the bridge is empty.
    let site_url = format!("{}/api/v1/site", edge.http_url);
    eventually("the entry light green", Duration::from_secs(15), || {
        let (http, url) = (http.clone(), site_url.clone());
        async move {
            get_json(&http, &url)
                .await
                .filter(|s| s["entry_light"] == "green" && s["pin_fault"] == false)
        }
    })
    .await
    .unwrap();
    eventually("the coils follow", Duration::from_secs(5), || {
        let lights = lights.clone();
        async move { (lights.coil(0) == Some(false) && lights.coil(1) == Some(true)).then_some(()) }
    })
    .await
    .unwrap();

    // The box lists the interlock's points as not writable, naming who drives them.
    let lines = get_json(&http, &format!("{}/api/v1/modbus", edge.http_url))
        .await
        .unwrap();
    let points = &lines[0]["devices"][0]["points"];
    assert_eq!(points["entry_green"]["writable"], false, "{points}");
    assert_eq!(
        points["entry_green"]["driven_by"], "site_io.entry_light.green",
        "{points}"
    );
    assert_eq!(points["yard_lamp"]["writable"], true, "{points}");

    // Central shows the box's live values, not only recorded ones.
    let live_url = format!(
        "{}/api/v1/live-values?device_id=field-box&prefix=modbus.lights.",
        central.http_url
    );
    let live = eventually("live values at central", Duration::from_secs(15), || {
        let (http, url) = (http.clone(), live_url.clone());
        async move {
            get_json(&http, &url).await.filter(|v| {
                v.as_array().is_some_and(|a| {
                    a.iter().any(|s| {
                        s["name"] == "modbus.lights.entry_green" && s["value"]["value"] == true
                    })
                })
            })
        }
    })
    .await
    .unwrap();
    assert!(
        live.as_array()
            .unwrap()
            .iter()
            .all(|s| s["device_id"] == "field-box"),
        "{live}"
    );

    // A command from the office switches the yard lamp on the device.
    let done = command_through_central(
        &central,
        json!({"kind": "modbus_write", "device": "lights", "point": "yard_lamp", "value": true}),
    )
    .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(lights.coil(2), Some(true));

    // The entry light belongs to the interlock: refused from central and from the terminal.
    let refused = command_through_central(
        &central,
        json!({"kind": "modbus_write", "device": "lights", "point": "entry_green", "value": false}),
    )
    .await;
    assert_eq!(refused["status"], "refused", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("site interlock"),
        "{refused}"
    );
    let (status, problem) = post(
        format!("{}/api/v1/modbus/lights/entry_green", edge.http_url),
        json!({"value": false}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(lights.coil(1), Some(true), "the entry light stayed green");

    let unknown = command_through_central(
        &central,
        json!({"kind": "modbus_write", "device": "lights", "point": "fog_horn", "value": true}),
    )
    .await;
    assert_eq!(unknown["status"], "refused", "{unknown}");
    assert!(
        unknown["error"]
            .as_str()
            .unwrap()
            .contains("no point \"fog_horn\""),
        "{unknown}"
    );

    // Requests central refuses before anything is sent.
    let commands_url = format!("{}/api/v1/devices", central.http_url);
    let bad = [
        (
            "nobody",
            json!({"action": {"kind": "modbus_write", "device": "d", "point": "p", "value": 1}, "requested_by": "x"}),
            404,
        ),
        (
            "field-box",
            json!({"action": {"kind": "reboot"}, "requested_by": "x"}),
            400,
        ),
        (
            "field-box",
            json!({"action": {"kind": "modbus_write", "device": "d", "point": "p", "value": [1]}, "requested_by": "x"}),
            422,
        ),
        (
            "field-box",
            json!({"action": {"kind": "modbus_write", "device": "d", "point": "p", "value": 1}, "requested_by": "x", "ttl_ms": 5}),
            422,
        ),
    ];
    for (device, body, expected) in bad {
        let (status, problem) =
            post_with(&http, format!("{commands_url}/{device}/commands"), body).await;
        assert_eq!(status, expected, "{problem}");
        assert!(problem["detail"].is_string(), "{problem}");
    }

    let listed = get_json(
        &http,
        &format!("{}/api/v1/commands?device_id=field-box", central.http_url),
    )
    .await
    .unwrap();
    let statuses: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 3, "{listed}");
    assert_eq!(statuses.iter().filter(|s| **s == "refused").count(), 2);
}
