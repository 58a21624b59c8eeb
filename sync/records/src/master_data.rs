//! Master data central sends to the boxes (partners, articles, vehicles with
//! stored tares, storage locations, lots, contracts): one versioned
//! document, published retained on the device's config topic and cached in
//! the box's SQLite so a weighing never waits for the network.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use valeo_drivers::scale::reading::Weight;

/// Largest master-data document accepted, in bytes: it travels as one MQTT
/// message, whose packet may be at most 1 MiB plus 4 KiB for the topic
/// (`valeo_sync::wire::MAX_BATCH_BYTES`; a larger one would be refused by
/// the broker and cut central's connection), and is kept whole in memory
/// on the box.
pub const MAX_MASTER_DATA_BYTES: usize = 1024 * 1024;

/// The whole master data of a site. Replaced as a whole: `version` only
/// ever grows, and a box ignores a document not newer than its cache.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterData {
    pub version: u64,
    #[serde(default)]
    pub partners: Vec<Partner>,
    #[serde(default)]
    pub articles: Vec<Article>,
    #[serde(default)]
    pub vehicles: Vec<Vehicle>,
    #[serde(default)]
    pub locations: Vec<Location>,
    #[serde(default)]
    pub lots: Vec<Lot>,
    #[serde(default)]
    pub contracts: Vec<Contract>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    pub id: String,
    pub name: String,
    /// `customer`, `supplier`, `haulier`.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Article {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vehicle {
    /// Normalised: trimmed, upper case.
    pub plate: String,
    #[serde(default)]
    pub haulier_id: Option<String>,
    #[serde(default)]
    pub stored_tare: Option<StoredTare>,
}

/// A vehicle's tare from an earlier weighing (MessEV § 26 (2)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTare {
    pub weight: Weight,
    /// RFC 3339 time the tare was weighed.
    pub weighed_at: String,
    /// The alibi number of that weighing; without one the tare is not
    /// legal for trade.
    #[serde(default)]
    pub alibi_id: Option<String>,
    #[serde(default)]
    pub scale_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lot {
    pub id: String,
    pub name: String,
    /// The article the lot (Charge) holds.
    pub article_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub id: String,
    pub partner_id: String,
    pub article_id: String,
    #[serde(default)]
    pub quantity_kg: Option<f64>,
}

/// A master-data document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterDataError {
    #[error("master data is {0} bytes, more than {MAX_MASTER_DATA_BYTES}")]
    TooLarge(usize),
    #[error("master data is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("{kind} {id:?} appears twice")]
    Duplicate { kind: &'static str, id: String },
    #[error("{kind} {id:?}: {field} is empty")]
    Empty {
        kind: &'static str,
        id: String,
        field: &'static str,
    },
    #[error("{kind} {id:?} refers to unknown {target} {target_id:?}")]
    Dangling {
        kind: &'static str,
        id: String,
        target: &'static str,
        target_id: String,
    },
}

/// The plate as stored and compared: trimmed, upper case, inner runs of
/// white space collapsed to one blank.
pub fn normalise_plate(plate: &str) -> String {
    plate
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

impl MasterData {
    /// Parses and checks a document received from outside.
    pub fn decode(bytes: &[u8]) -> Result<MasterData, MasterDataError> {
        if bytes.len() > MAX_MASTER_DATA_BYTES {
            return Err(MasterDataError::TooLarge(bytes.len()));
        }
        // The path names the field that is wrong, e.g. `lots[2].article_id`.
        let data: MasterData =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
                .map_err(|e| MasterDataError::Malformed(format!("{}: {}", e.path(), e.inner())))?;
        data.validate()?;
        Ok(data)
    }

    /// Ids unique and non-empty, references resolve, plates normalised.
    pub fn validate(&self) -> Result<(), MasterDataError> {
        fn unique<'a>(
            kind: &'static str,
            ids: impl Iterator<Item = (&'a str, &'a str)>,
        ) -> Result<HashSet<&'a str>, MasterDataError> {
            let mut seen = HashSet::new();
            for (id, name) in ids {
                if id.trim().is_empty() || name.trim().is_empty() {
                    return Err(MasterDataError::Empty {
                        kind,
                        id: id.to_owned(),
                        field: if id.trim().is_empty() { "id" } else { "name" },
                    });
                }
                if !seen.insert(id) {
                    return Err(MasterDataError::Duplicate {
                        kind,
                        id: id.to_owned(),
                    });
                }
            }
            Ok(seen)
        }
        let partners = unique(
            "partner",
            self.partners
                .iter()
                .map(|p| (p.id.as_str(), p.name.as_str())),
        )?;
        let articles = unique(
            "article",
            self.articles
                .iter()
                .map(|a| (a.id.as_str(), a.name.as_str())),
        )?;
        unique(
            "location",
            self.locations
                .iter()
                .map(|l| (l.id.as_str(), l.name.as_str())),
        )?;
        unique(
            "lot",
            self.lots.iter().map(|l| (l.id.as_str(), l.name.as_str())),
        )?;
        unique(
            "contract",
            self.contracts
                .iter()
                .map(|c| (c.id.as_str(), c.id.as_str())),
        )?;
        unique(
            "vehicle",
            self.vehicles
                .iter()
                .map(|v| (v.plate.as_str(), v.plate.as_str())),
        )?;
        let dangling = |kind, id: &str, target, target_id: &str| MasterDataError::Dangling {
            kind,
            id: id.to_owned(),
            target,
            target_id: target_id.to_owned(),
        };
        for v in &self.vehicles {
            if normalise_plate(&v.plate) != v.plate {
                return Err(MasterDataError::Malformed(format!(
                    "vehicle plate {:?} is not normalised (trimmed, upper case)",
                    v.plate
                )));
            }
            if let Some(h) = &v.haulier_id
                && !partners.contains(h.as_str())
            {
                return Err(dangling("vehicle", &v.plate, "partner", h));
            }
        }
        for lot in &self.lots {
            if !articles.contains(lot.article_id.as_str()) {
                return Err(dangling("lot", &lot.id, "article", &lot.article_id));
            }
        }
        for c in &self.contracts {
            if !partners.contains(c.partner_id.as_str()) {
                return Err(dangling("contract", &c.id, "partner", &c.partner_id));
            }
            if !articles.contains(c.article_id.as_str()) {
                return Err(dangling("contract", &c.id, "article", &c.article_id));
            }
        }
        Ok(())
    }

    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.partners.iter().find(|p| p.id == id)
    }
    pub fn article(&self, id: &str) -> Option<&Article> {
        self.articles.iter().find(|a| a.id == id)
    }
    pub fn vehicle(&self, plate: &str) -> Option<&Vehicle> {
        self.vehicles.iter().find(|v| v.plate == plate)
    }
    pub fn location(&self, id: &str) -> Option<&Location> {
        self.locations.iter().find(|l| l.id == id)
    }
    pub fn lot(&self, id: &str) -> Option<&Lot> {
        self.lots.iter().find(|l| l.id == id)
    }
    pub fn contract(&self, id: &str) -> Option<&Contract> {
        self.contracts.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Result<MasterData, MasterDataError> {
        MasterData::decode(json.as_bytes())
    }

    #[test]
    fn a_full_document_decodes() {
        let d = doc(r#"{"version": 2,
            "partners": [{"id": "P-100", "name": "Hof Meyer", "roles": ["supplier"]}],
            "articles": [{"id": "A-WHEAT", "name": "Weizen"}],
            "vehicles": [{"plate": "OS-ST 9", "stored_tare": {"weight": {"value": 14000, "decimals": 0, "unit": "kg"},
                          "weighed_at": "2026-11-01T07:00:00Z", "alibi_id": "991"}}],
            "locations": [{"id": "SILO-3", "name": "Silo 3"}],
            "lots": [{"id": "L-44", "name": "Charge 44", "article_id": "A-WHEAT"}],
            "contracts": [{"id": "K-1", "partner_id": "P-100", "article_id": "A-WHEAT", "quantity_kg": 500000}]}"#)
        .unwrap();
        assert_eq!(d.version, 2);
        assert_eq!(
            d.vehicle("OS-ST 9")
                .unwrap()
                .stored_tare
                .as_ref()
                .unwrap()
                .weight
                .value,
            14000
        );
        assert_eq!(d.lot("L-44").unwrap().article_id, "A-WHEAT");
    }

    #[test]
    fn bad_documents_name_what_is_wrong() {
        let cases = [
            ("not json", "not valid JSON"),
            (r#"{"version": 1, "colour": "red"}"#, "colour"),
            (
                r#"{"version": 1, "articles": [{"id": "A", "name": "x"}, {"id": "A", "name": "y"}]}"#,
                "article \"A\" appears twice",
            ),
            (
                r#"{"version": 1, "lots": [{"id": "L", "name": "x", "article_id": "NOPE"}]}"#,
                "lot \"L\" refers to unknown article \"NOPE\"",
            ),
            (
                r#"{"version": 1, "partners": [{"id": " ", "name": "x"}]}"#,
                "id is empty",
            ),
            (
                r#"{"version": 1, "vehicles": [{"plate": "os-x 1"}]}"#,
                "not normalised",
            ),
        ];
        for (json, needle) in cases {
            let err = doc(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let huge = vec![b' '; MAX_MASTER_DATA_BYTES + 1];
        assert!(matches!(
            MasterData::decode(&huge),
            Err(MasterDataError::TooLarge(_))
        ));
    }

    #[test]
    fn plates_are_normalised() {
        assert_eq!(normalise_plate("  os-ve   101 "), "OS-VE 101");
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            // Any outcome is fine but a panic; an accepted document is valid.
            if let Ok(data) = MasterData::decode(&bytes) {
                proptest::prop_assert!(data.validate().is_ok());
            }
        }
    }
}
