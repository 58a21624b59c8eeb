//! Master data: the entities office staff edit (sites, partners, articles,
//! vehicles, storage locations, lots, contracts), their field checks, the
//! one versioned document built from them for the boxes, and publishing that
//! document. Every stored version is published, retained, on each
//! registered device's config topic, when it changes and when central
//! starts (an embedded broker forgets retained messages when it restarts).
//!
//! Central knows more than a box needs (addresses, VAT ids, contract
//! periods, sites); the document carries only what a weighing uses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::ToSchema;
use valeo_records::master_data as doc;
use valeo_records::master_data::{MasterData, normalise_plate};
use valeo_sync::receiver::DevicePublisher;

use crate::store::{PutMasterDataError, Store};

/// Longest id of any entity, in characters.
pub const MAX_ID_CHARS: usize = 64;
/// Longest name, address or remark, in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// Largest contract quantity, kilograms (a million tonnes).
pub const MAX_CONTRACT_KG: f64 = 1e9;

/// The kinds of master data, as they appear in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sites,
    Partners,
    Articles,
    Vehicles,
    Locations,
    Lots,
    Contracts,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sites => "sites",
            Kind::Partners => "partners",
            Kind::Articles => "articles",
            Kind::Vehicles => "vehicles",
            Kind::Locations => "locations",
            Kind::Lots => "lots",
            Kind::Contracts => "contracts",
        }
    }

    /// One of them, for messages: `partner "P-1" ...`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Sites => "site",
            Kind::Partners => "partner",
            Kind::Articles => "article",
            Kind::Vehicles => "vehicle",
            Kind::Locations => "location",
            Kind::Lots => "lot",
            Kind::Contracts => "contract",
        }
    }
}

/// One kind of master data as the API and the store handle it.
pub trait Entity: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: Kind;
    fn id(&self) -> &str;
    /// Normalises the fields and checks them, naming the field that is
    /// wrong. References to other entities are checked by the store, which
    /// sees all of them.
    fn check(&mut self) -> Result<(), String>;
    /// An id from a URL as it is stored.
    fn normalise_id(id: &str) -> String {
        id.to_owned()
    }
}

/// A site: one weighbridge yard with its boxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "HAFEN", "name": "Werk Hafen", "address": "Kaiweg 3, 49090 Osnabrück"}))]
pub struct Site {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub address: Option<String>,
}

/// What a partner is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PartnerRole {
    Customer,
    Supplier,
    Haulier,
}

impl PartnerRole {
    fn as_str(self) -> &'static str {
        match self {
            PartnerRole::Customer => "customer",
            PartnerRole::Supplier => "supplier",
            PartnerRole::Haulier => "haulier",
        }
    }
}

/// A customer, supplier or haulier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "P-100", "name": "Hof Meyer", "roles": ["supplier"], "vat_id": "DE123456789"}))]
pub struct Partner {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub roles: Vec<PartnerRole>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub vat_id: Option<String>,
}

/// A good that is weighed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "A-WHEAT", "name": "Weizen"}))]
pub struct Article {
    pub id: String,
    pub name: String,
}

/// A vehicle; its id is its normalised plate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"plate": "OS-AB 123", "haulier_id": "P-200"}))]
pub struct Vehicle {
    /// The normalised plate; may be left out when creating.
    #[serde(default)]
    pub id: String,
    pub plate: String,
    #[serde(default)]
    pub haulier_id: Option<String>,
    /// The tare from an earlier weighing, for one-pass weighings
    /// (`weight`, `weighed_at`, `alibi_id`, `scale_id`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub stored_tare: Option<doc::StoredTare>,
}

/// A storage location (silo, bay, yard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "SILO-3", "name": "Silo 3", "site_id": "HAFEN"}))]
pub struct Location {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub site_id: Option<String>,
}

/// A lot (Charge) of one article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "L-2026-17", "name": "Weizen Ernte 2026/17", "article_id": "A-WHEAT"}))]
pub struct Lot {
    pub id: String,
    pub name: String,
    pub article_id: String,
}

/// A contract: a quantity of an article with a partner over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "K-2026-001", "partner_id": "P-100", "article_id": "A-WHEAT",
    "quantity_kg": 250000.0, "valid_from": "2026-07-01", "valid_to": "2026-12-31"}))]
pub struct Contract {
    pub id: String,
    pub partner_id: String,
    pub article_id: String,
    #[serde(default)]
    pub quantity_kg: Option<f64>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub valid_from: Option<chrono::NaiveDate>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Date)]
    pub valid_to: Option<chrono::NaiveDate>,
}

/// An entity as stored: its fields, its version (the ETag) and who
/// changed it last.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Versioned<E> {
    #[serde(flatten)]
    pub data: E,
    pub version: u64,
    pub updated_at: String,
    pub updated_by: String,
    /// Contracts only: net kilograms delivered so far on complete,
    /// uncancelled weighings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_kg: Option<f64>,
}

impl<E> Versioned<E> {
    /// An entity as just stored by `actor`.
    pub fn new(data: E, version: u64, updated_at: String, actor: &str) -> Versioned<E> {
        Versioned {
            data,
            version,
            updated_at,
            updated_by: actor.to_owned(),
            delivered_kg: None,
        }
    }
}

fn check_id(field: &str, id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!("{field}: longer than {MAX_ID_CHARS} characters"));
    }
    if id != id.trim() || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!(
            "{field}: must not contain control characters or '/', nor start or end with white space"
        ));
    }
    Ok(())
}

fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    check_optional_text(field, Some(text))
}

fn check_optional_text(field: &str, text: Option<&str>) -> Result<(), String> {
    let Some(text) = text else { return Ok(()) };
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("{field}: longer than {MAX_TEXT_CHARS} characters"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("{field}: must not contain control characters"));
    }
    Ok(())
}

fn check_reference(field: &str, id: Option<&str>) -> Result<(), String> {
    id.map_or(Ok(()), |id| check_id(field, id))
}

impl Entity for Site {
    const KIND: Kind = Kind::Sites;
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&mut self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_text("name", &self.name)?;
        check_optional_text("address", self.address.as_deref())
    }
}

impl Entity for Partner {
    const KIND: Kind = Kind::Partners;
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&mut self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_text("name", &self.name)?;
        check_optional_text("address", self.address.as_deref())?;
        check_optional_text("vat_id", self.vat_id.as_deref())?;
        self.roles.sort_by_key(|r| r.as_str());
        self.roles.dedup();
        Ok(())
    }
}

impl Entity for Article {
    const KIND: Kind = Kind::Articles;
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&mut self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_text("name", &self.name)
    }
}

impl Entity for Vehicle {
    const KIND: Kind = Kind::Vehicles;
    fn id(&self) -> &str {
        &self.id
    }
    /// `/api/v1/vehicles/os-ab%20123` is the vehicle `OS-AB 123`.
    fn normalise_id(id: &str) -> String {
        normalise_plate(id)
    }
    fn check(&mut self) -> Result<(), String> {
        self.plate = normalise_plate(&self.plate);
        check_id("plate", &self.plate)?;
        if self.id.is_empty() {
            self.id.clone_from(&self.plate);
        } else if normalise_plate(&self.id) != self.plate {
            return Err(format!(
                "id: must be the normalised plate {:?}, or left out",
                self.plate
            ));
        }
        self.id.clone_from(&self.plate);
        if let Some(tare) = &self.stored_tare {
            // A box weighs against this tare (MessEV § 26): it must be a
            // real weight, weighed at a real time in the past.
            if tare.weight.value <= 0 {
                return Err("stored_tare.weight: must be positive".into());
            }
            match chrono::DateTime::parse_from_rfc3339(&tare.weighed_at) {
                Ok(at) if at <= chrono::Utc::now() => {}
                Ok(_) => return Err("stored_tare.weighed_at: in the future".into()),
                Err(_) => {
                    return Err(format!(
                        "stored_tare.weighed_at: not an RFC 3339 time: {:?}",
                        tare.weighed_at
                    ));
                }
            }
        }
        check_reference("haulier_id", self.haulier_id.as_deref())
    }
}

impl Entity for Location {
    const KIND: Kind = Kind::Locations;
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&mut self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_text("name", &self.name)?;
        check_reference("site_id", self.site_id.as_deref())
    }
}

impl Entity for Lot {
    const KIND: Kind = Kind::Lots;
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&mut self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_text("name", &self.name)?;
        check_id("article_id", &self.article_id)
    }
}

impl Entity for Contract {
    const KIND: Kind = Kind::Contracts;
    fn id(&self) -> &str {
        &self.id
    }
    fn check(&mut self) -> Result<(), String> {
        check_id("id", &self.id)?;
        check_id("partner_id", &self.partner_id)?;
        check_id("article_id", &self.article_id)?;
        if let Some(q) = self.quantity_kg
            && !(q.is_finite() && q > 0.0 && q <= MAX_CONTRACT_KG)
        {
            return Err(format!(
                "quantity_kg: must be a positive number of kilograms, at most {MAX_CONTRACT_KG}"
            ));
        }
        if let (Some(from), Some(to)) = (self.valid_from, self.valid_to)
            && to < from
        {
            return Err("valid_to: before valid_from".into());
        }
        Ok(())
    }
}

/// All master data, typed.
#[derive(Debug, Clone, Default)]
pub struct Entities {
    pub sites: Vec<Site>,
    pub partners: Vec<Partner>,
    pub articles: Vec<Article>,
    pub vehicles: Vec<Vehicle>,
    pub locations: Vec<Location>,
    pub lots: Vec<Lot>,
    pub contracts: Vec<Contract>,
}

impl Entities {
    /// The document the boxes get, with `version`; checked, so a reference
    /// to an entity that does not exist is refused here.
    pub fn document(&self, version: u64) -> Result<MasterData, String> {
        let data = MasterData {
            version,
            partners: self
                .partners
                .iter()
                .map(|p| doc::Partner {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    roles: p.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                })
                .collect(),
            articles: self
                .articles
                .iter()
                .map(|a| doc::Article {
                    id: a.id.clone(),
                    name: a.name.clone(),
                })
                .collect(),
            vehicles: self
                .vehicles
                .iter()
                .map(|v| doc::Vehicle {
                    plate: v.plate.clone(),
                    haulier_id: v.haulier_id.clone(),
                    stored_tare: v.stored_tare.clone(),
                })
                .collect(),
            locations: self
                .locations
                .iter()
                .map(|l| doc::Location {
                    id: l.id.clone(),
                    name: l.name.clone(),
                })
                .collect(),
            lots: self
                .lots
                .iter()
                .map(|l| doc::Lot {
                    id: l.id.clone(),
                    name: l.name.clone(),
                    article_id: l.article_id.clone(),
                })
                .collect(),
            contracts: self
                .contracts
                .iter()
                .map(|c| doc::Contract {
                    id: c.id.clone(),
                    partner_id: c.partner_id.clone(),
                    article_id: c.article_id.clone(),
                    quantity_kg: c.quantity_kg,
                })
                .collect(),
        };
        data.validate().map_err(|e| e.to_string())?;
        for location in &self.locations {
            if let Some(site) = &location.site_id
                && !self.sites.iter().any(|s| &s.id == site)
            {
                return Err(format!(
                    "location {:?} refers to unknown site {site:?}",
                    location.id
                ));
            }
        }
        let size = serde_json::to_vec(&data).map_or(0, |v| v.len());
        if size > doc::MAX_MASTER_DATA_BYTES {
            return Err(format!(
                "master data would be {size} bytes, more than {} (one MQTT message): remove entities no longer needed",
                doc::MAX_MASTER_DATA_BYTES
            ));
        }
        Ok(data)
    }

    /// The entities of a whole document (a bulk import), keeping what
    /// central alone knows (sites, addresses, contract periods) of the
    /// entities that stay.
    pub fn from_document(data: &MasterData, current: &Entities) -> Result<Entities, String> {
        let mut next = Entities::convert(data, current)?;
        next.check_all()?;
        Ok(next)
    }

    fn convert(data: &MasterData, current: &Entities) -> Result<Entities, String> {
        let mut next = Entities {
            sites: current.sites.clone(),
            ..Entities::default()
        };
        for p in &data.partners {
            let old = current.partners.iter().find(|o| o.id == p.id);
            let mut roles = Vec::new();
            for role in &p.roles {
                roles.push(
                    serde_json::from_value::<PartnerRole>(serde_json::Value::String(role.clone()))
                        .map_err(|_| {
                            format!(
                                "partner {:?}: role {role:?} is not customer, supplier or haulier",
                                p.id
                            )
                        })?,
                );
            }
            next.partners.push(Partner {
                id: p.id.clone(),
                name: p.name.clone(),
                roles,
                address: old.and_then(|o| o.address.clone()),
                vat_id: old.and_then(|o| o.vat_id.clone()),
            });
        }
        next.articles = data
            .articles
            .iter()
            .map(|a| Article {
                id: a.id.clone(),
                name: a.name.clone(),
            })
            .collect();
        next.vehicles = data
            .vehicles
            .iter()
            .map(|v| Vehicle {
                id: v.plate.clone(),
                plate: v.plate.clone(),
                haulier_id: v.haulier_id.clone(),
                stored_tare: v.stored_tare.clone(),
            })
            .collect();
        next.locations = data
            .locations
            .iter()
            .map(|l| Location {
                id: l.id.clone(),
                name: l.name.clone(),
                site_id: current
                    .locations
                    .iter()
                    .find(|o| o.id == l.id)
                    .and_then(|o| o.site_id.clone()),
            })
            .collect();
        next.lots = data
            .lots
            .iter()
            .map(|l| Lot {
                id: l.id.clone(),
                name: l.name.clone(),
                article_id: l.article_id.clone(),
            })
            .collect();
        for c in &data.contracts {
            let old = current.contracts.iter().find(|o| o.id == c.id);
            next.contracts.push(Contract {
                id: c.id.clone(),
                partner_id: c.partner_id.clone(),
                article_id: c.article_id.clone(),
                quantity_kg: c.quantity_kg,
                valid_from: old.and_then(|o| o.valid_from),
                valid_to: old.and_then(|o| o.valid_to),
            });
        }
        Ok(next)
    }

    /// The entities of a document an earlier release stored, without the
    /// field checks of this one (a role it does not know is dropped).
    pub fn from_document_as_stored(data: &MasterData) -> Entities {
        let known = |r: &String| ["customer", "supplier", "haulier"].contains(&r.as_str());
        let lenient = MasterData {
            partners: data
                .partners
                .iter()
                .map(|p| doc::Partner {
                    roles: p.roles.iter().filter(|r| known(r)).cloned().collect(),
                    ..p.clone()
                })
                .collect(),
            ..data.clone()
        };
        // Only an unknown role fails the conversion, and none is left.
        Entities::convert(&lenient, &Entities::default()).unwrap_or_default()
    }

    /// Runs every entity's field checks (a bulk import enters here).
    fn check_all(&mut self) -> Result<(), String> {
        fn each<E: Entity>(items: &mut [E]) -> Result<(), String> {
            for item in items {
                let id = item.id().to_owned();
                item.check()
                    .map_err(|e| format!("{} {id:?}: {e}", E::KIND.singular()))?;
            }
            Ok(())
        }
        each(&mut self.sites)?;
        each(&mut self.partners)?;
        each(&mut self.articles)?;
        each(&mut self.vehicles)?;
        each(&mut self.locations)?;
        each(&mut self.lots)?;
        each(&mut self.contracts)
    }
}

/// The one task that publishes master data to the boxes. Handlers only
/// wake it after their commit: a handler that is dropped (client gone,
/// request timeout) cannot skip a publication, and as the task always
/// reads the newest document, an older one is never published after a
/// newer.
#[derive(Debug, Clone)]
pub struct MasterDataPublisher {
    wake: Arc<Notify>,
}

/// Longest wait before publishing again after a failure, in milliseconds.
pub const MAX_PUBLISH_RETRY_MS: u64 = 60_000;

impl MasterDataPublisher {
    /// Starts the task; it publishes what is stored at once.
    pub fn spawn(store: Store, publisher: DevicePublisher) -> MasterDataPublisher {
        let wake = Arc::new(Notify::new());
        wake.notify_one();
        let task_wake = Arc::clone(&wake);
        tokio::spawn(async move {
            let mut published = None;
            let mut retry_ms = 500;
            loop {
                task_wake.notified().await;
                match publish_newer(&store, &publisher, published).await {
                    Ok(version) => {
                        published = version.or(published);
                        retry_ms = 500;
                    }
                    Err(error) => {
                        tracing::error!(%error, retry_ms, "master data not published; will retry");
                        tokio::time::sleep(Duration::from_millis(retry_ms)).await;
                        retry_ms = (retry_ms * 2).min(MAX_PUBLISH_RETRY_MS);
                        task_wake.notify_one();
                    }
                }
            }
        });
        MasterDataPublisher { wake }
    }

    /// Master data was committed: publish it.
    pub fn changed(&self) {
        self.wake.notify_one();
    }
}

/// Publishes the stored master data to every registered device when it is
/// newer than `published`; the version published, if any. The database
/// reads run on the blocking pool.
async fn publish_newer(
    store: &Store,
    publisher: &DevicePublisher,
    published: Option<u64>,
) -> anyhow::Result<Option<u64>> {
    let (data, devices) = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, anyhow::Error>((store.master_data()?, store.devices()?))
        })
        .await??
    };
    let Some(data) = data else { return Ok(None) };
    if published.is_some_and(|p| p >= data.version) {
        return Ok(None);
    }
    let payload = Bytes::from(serde_json::to_vec(&data)?);
    for device in &devices {
        publisher
            .publish(&device.device_id, payload.clone())
            .await?;
    }
    tracing::info!(
        version = data.version,
        devices = devices.len(),
        "master data published"
    );
    Ok(Some(data.version))
}

/// Stores the document in `path` as the first master data, when the
/// database has none yet (a demo or a fresh installation).
pub fn seed_from_file(store: &Store, path: &Path) -> anyhow::Result<()> {
    if store.master_data()?.is_some() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("master_data_file {}: {e}", path.display()))?;
    let document: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("master_data_file {}: {e}", path.display()))?;
    match store.put_master_data(document, None, "system:master_data_file") {
        Ok(data) => {
            tracing::info!(version = data.version, path = %path.display(), "master data seeded");
            Ok(())
        }
        Err(PutMasterDataError::Invalid(reason)) => {
            anyhow::bail!("master_data_file {}: {reason}", path.display())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_name_the_field() {
        type Check = Box<dyn Fn() -> Result<(), String>>;
        let cases: Vec<(Check, &str)> = vec![
            (
                Box::new(|| {
                    Site {
                        id: " X".into(),
                        name: "n".into(),
                        address: None,
                    }
                    .check()
                }),
                "id:",
            ),
            (
                Box::new(|| {
                    Article {
                        id: "A".into(),
                        name: "".into(),
                    }
                    .check()
                }),
                "name:",
            ),
            (
                Box::new(|| {
                    Article {
                        id: "a/b".into(),
                        name: "x".into(),
                    }
                    .check()
                }),
                "id:",
            ),
            (
                Box::new(|| {
                    Contract {
                        id: "K".into(),
                        partner_id: "P".into(),
                        article_id: "A".into(),
                        quantity_kg: Some(-1.0),
                        valid_from: None,
                        valid_to: None,
                    }
                    .check()
                }),
                "quantity_kg:",
            ),
            (
                Box::new(|| {
                    Vehicle {
                        id: "OTHER".into(),
                        plate: "os ab 1".into(),
                        haulier_id: None,
                        stored_tare: None,
                    }
                    .check()
                }),
                "id:",
            ),
        ];
        let tare = |value: i64, weighed_at: &str| doc::StoredTare {
            weight: valeo_drivers::scale::reading::Weight::kg(value),
            weighed_at: weighed_at.into(),
            alibi_id: Some("817".into()),
            scale_id: None,
        };
        let vehicle = |stored_tare| Vehicle {
            id: String::new(),
            plate: "OS-AB 1".into(),
            haulier_id: None,
            stored_tare: Some(stored_tare),
        };
        let mut cases = cases;
        for (stored, field) in [
            (tare(14_000, "yesterday"), "stored_tare.weighed_at:"),
            (
                tare(14_000, "2999-01-01T00:00:00Z"),
                "stored_tare.weighed_at:",
            ),
            (tare(0, "2026-01-01T00:00:00Z"), "stored_tare.weight:"),
        ] {
            let v = vehicle(stored);
            cases.push((Box::new(move || v.clone().check()), field));
        }
        assert!(
            vehicle(tare(14_000, "2026-01-01T07:00:00+01:00"))
                .check()
                .is_ok()
        );
        for (check, field) in cases {
            let error = check().unwrap_err();
            assert!(
                error.starts_with(field),
                "{error} should start with {field}"
            );
        }
    }

    #[test]
    fn a_vehicle_takes_its_normalised_plate_as_id() {
        let mut v = Vehicle {
            id: String::new(),
            plate: "  os-ab   123 ".into(),
            haulier_id: None,
            stored_tare: None,
        };
        v.check().unwrap();
        assert_eq!(
            (v.id.as_str(), v.plate.as_str()),
            ("OS-AB 123", "OS-AB 123")
        );
    }

    #[test]
    fn the_document_refuses_dangling_references_and_a_bulk_import_keeps_central_fields() {
        let mut entities = Entities::default();
        entities.lots.push(Lot {
            id: "L1".into(),
            name: "Lot".into(),
            article_id: "nope".into(),
        });
        let error = entities.document(1).unwrap_err();
        assert!(error.contains("unknown article"), "{error}");

        let current = Entities {
            partners: vec![Partner {
                id: "P1".into(),
                name: "Old".into(),
                roles: vec![],
                address: Some("Feldweg 1".into()),
                vat_id: None,
            }],
            ..Entities::default()
        };
        let data = MasterData {
            version: 9,
            partners: vec![doc::Partner {
                id: "P1".into(),
                name: "New".into(),
                roles: vec!["customer".into()],
            }],
            ..MasterData::default()
        };
        let next = Entities::from_document(&data, &current).unwrap();
        assert_eq!(next.partners[0].name, "New");
        assert_eq!(next.partners[0].address.as_deref(), Some("Feldweg 1"));
        assert_eq!(next.document(10).unwrap().partners[0].roles, ["customer"]);
        let bad = MasterData {
            partners: vec![doc::Partner {
                id: "P1".into(),
                name: "New".into(),
                roles: vec!["king".into()],
            }],
            ..MasterData::default()
        };
        let error = Entities::from_document(&bad, &current).unwrap_err();
        assert!(error.contains("role \"king\""), "{error}");
    }
}
