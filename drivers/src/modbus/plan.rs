//! Read requests for a poll group: the group's points merged into as few
//! requests as the Modbus limits (125 registers, 2000 bits) and the
//! device's own caps allow, crossing gaps of at most `max_gap_registers`.
//! Pure, so the merging is tested on its own.

use super::map::{DeviceConfig, Table};

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub table: Table,
    /// 0-based protocol address.
    pub start: u16,
    pub count: u16,
    /// Indices into `DeviceConfig::points`.
    pub points: Vec<usize>,
}

impl ReadRequest {
    /// Where point `index` starts within this request's reply.
    pub fn offset_of(&self, device: &DeviceConfig, index: usize) -> Option<usize> {
        let address = device
            .points
            .get(index)?
            .protocol_address(device.address_base)?;
        Some(usize::from(address.checked_sub(self.start)?))
    }
}

/// The requests that read every point of `group` on `device`, in address
/// order per table.
pub fn plan(device: &DeviceConfig, group: &str) -> Vec<ReadRequest> {
    let mut spans: Vec<(Table, u16, u16, usize)> = device
        .points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.poll_group == group)
        .filter_map(|(i, p)| {
            let start = p.protocol_address(device.address_base)?;
            Some((p.table, start, p.width(), i))
        })
        .collect();
    spans.sort();
    let mut requests: Vec<ReadRequest> = Vec::new();
    for (table, start, width, index) in spans {
        let cap = if table.is_bits() {
            device.max_bits_per_request
        } else {
            device.max_registers_per_request
        };
        let end = u32::from(start) + u32::from(width);
        if let Some(last) = requests.last_mut()
            && last.table == table
        {
            let last_end = u32::from(last.start) + u32::from(last.count);
            let gap = u32::from(start).saturating_sub(last_end);
            let merged = end.max(last_end) - u32::from(last.start);
            if gap <= u32::from(device.max_gap_registers) && merged <= u32::from(cap) {
                last.count = merged as u16;
                last.points.push(index);
                continue;
            }
        }
        requests.push(ReadRequest {
            table,
            start,
            count: width,
            points: vec![index],
        });
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::map::{PointConfig, decode};

    fn device(points: &[(&str, &str, u32, &str)], extra: &str) -> DeviceConfig {
        let mut text = format!("id = \"d\"\nunit = 1\naddress_base = 0\n{extra}\n");
        for (name, table, address, ty) in points {
            text.push_str(&format!(
                "[[points]]\nname = \"{name}\"\ntable = \"{table}\"\naddress = {address}\ntype = \"{ty}\"\n"
            ));
            if *ty == "bool" && table.ends_with("register") {
                text.push_str("bit = 0\n");
            }
        }
        let device: DeviceConfig = toml::from_str(&text).unwrap();
        device.validate(false).unwrap();
        device
    }

    fn shape(requests: &[ReadRequest]) -> Vec<(Table, u16, u16, usize)> {
        requests
            .iter()
            .map(|r| (r.table, r.start, r.count, r.points.len()))
            .collect()
    }

    #[test]
    fn contiguous_points_merge_and_gaps_and_tables_split() {
        let d = device(
            &[
                ("a", "holding_register", 0, "u16"),
                ("b", "holding_register", 1, "f32"),
                ("c", "holding_register", 3, "u16"),
                ("far", "holding_register", 10, "u16"),
                ("in", "input_register", 1, "u16"),
                ("k1", "coil", 0, "bool"),
                ("k2", "coil", 1, "bool"),
            ],
            "",
        );
        assert_eq!(
            shape(&plan(&d, "default")),
            [
                (Table::Coil, 0, 2, 2),
                (Table::InputRegister, 1, 1, 1),
                (Table::HoldingRegister, 0, 4, 3),
                (Table::HoldingRegister, 10, 1, 1),
            ]
        );
        let bridged = device(
            &[
                ("a", "holding_register", 0, "u16"),
                ("far", "holding_register", 10, "u16"),
            ],
            "max_gap_registers = 9",
        );
        assert_eq!(
            shape(&plan(&bridged, "default")),
            [(Table::HoldingRegister, 0, 11, 2)]
        );
    }

    #[test]
    fn requests_stay_within_the_spec_and_the_device_cap() {
        let points: Vec<(String, u32)> = (0..300).map(|i| (format!("p{i}"), i)).collect();
        let spec: Vec<(&str, &str, u32, &str)> = points
            .iter()
            .map(|(n, a)| (n.as_str(), "input_register", *a, "u16"))
            .collect();
        let d = device(&spec, "");
        assert_eq!(
            shape(&plan(&d, "default")),
            [
                (Table::InputRegister, 0, 125, 125),
                (Table::InputRegister, 125, 125, 125),
                (Table::InputRegister, 250, 50, 50)
            ]
        );
        let capped = device(&spec[..10], "max_registers_per_request = 4");
        assert_eq!(plan(&capped, "default").len(), 3);
        let bits: Vec<(String, u32)> = (0..2100).map(|i| (format!("c{i}"), i)).collect();
        let spec: Vec<(&str, &str, u32, &str)> = bits
            .iter()
            .map(|(n, a)| (n.as_str(), "coil", *a, "bool"))
            .collect();
        assert_eq!(
            shape(&plan(&device(&spec, ""), "default")),
            [(Table::Coil, 0, 2000, 2000), (Table::Coil, 2000, 100, 100)]
        );
    }

    #[test]
    fn each_point_is_found_at_its_offset_in_the_reply() {
        let d = device(
            &[
                ("a", "holding_register", 5, "u16"),
                ("b", "holding_register", 6, "u32"),
            ],
            "",
        );
        let request = &plan(&d, "default")[0];
        let reply: Vec<u16> = vec![7, 0, 9];
        let values: Vec<_> = request
            .points
            .iter()
            .map(|&i| {
                let p: &PointConfig = &d.points[i];
                let at = request.offset_of(&d, i).unwrap();
                decode(p, &reply[at..at + usize::from(p.width())]).unwrap()
            })
            .collect();
        assert_eq!(values[0].as_f64(), Some(7.0));
        assert_eq!(values[1].as_f64(), Some(9.0));
    }
}
