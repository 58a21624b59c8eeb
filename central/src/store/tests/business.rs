//! The business data through the store on a real SQLite file: master data
//! versions and references, a completed ticket's stock booking, its
//! delivery note, a cancellation's reversal, filters, reports and proof.

use super::*;
use crate::master_data::{Article, Contract, Location, Partner, PartnerRole, Site};
use valeo_records::{Cancellation, KIND_CANCELLATION};

fn wheat_ticket(ticket_no: u64, plate: &str) -> Vec<(&'static str, serde_json::Value)> {
    let context = TicketContext {
        partner: Some(Ref {
            id: "P-1".into(),
            name: "Hof Meyer".into(),
        }),
        article: Some(Ref {
            id: "A-WHEAT".into(),
            name: "Weizen".into(),
        }),
        contract_id: Some("K-1".into()),
        location: Some(Ref {
            id: "SILO-3".into(),
            name: "Silo 3".into(),
        }),
        ..TicketContext::default()
    };
    let first = FirstWeighing {
        ticket_no,
        plate: plate.into(),
        direction: Direction::Intake,
        first: step(40_000, Some("A-1")),
        context,
    };
    let second = SecondWeighing {
        ticket_no,
        plate: plate.into(),
        direction: Direction::Intake,
        first: step(40_000, Some("A-1")),
        second: step(14_980, Some("A-2")),
        gross: kg(40_000),
        tare: kg(14_980),
        net: kg(25_020),
        operator: None,
    };
    vec![
        (KIND_FIRST_WEIGHING, serde_json::to_value(first).unwrap()),
        (KIND_SECOND_WEIGHING, serde_json::to_value(second).unwrap()),
    ]
}

fn seed_master_data(store: &Store) {
    store
        .create_entity(
            Site {
                id: "HAFEN".into(),
                name: "Werk Hafen".into(),
                address: None,
            },
            "user:test",
        )
        .unwrap();
    store
        .create_entity(
            Partner {
                id: "P-1".into(),
                name: "Hof Meyer".into(),
                roles: vec![PartnerRole::Supplier],
                address: None,
                vat_id: None,
            },
            "user:test",
        )
        .unwrap();
    store
        .create_entity(
            Article {
                id: "A-WHEAT".into(),
                name: "Weizen".into(),
            },
            "user:test",
        )
        .unwrap();
    store
        .create_entity(
            Location {
                id: "SILO-3".into(),
                name: "Silo 3".into(),
                site_id: Some("HAFEN".into()),
            },
            "user:test",
        )
        .unwrap();
}

#[test]
fn master_data_entities_have_versions_and_references_that_hold() {
    let (_dir, store) = store();
    seed_master_data(&store);
    let (partner, data) = store
        .create_entity(
            Partner {
                id: "P-2".into(),
                name: "Spedition Nord".into(),
                roles: vec![PartnerRole::Haulier],
                address: None,
                vat_id: None,
            },
            "user:alice",
        )
        .unwrap();
    assert_eq!(
        partner.version, data.version,
        "an entity's version is that of the document its change made"
    );
    assert!(data.partner("P-2").is_some(), "the boxes' document has it");
    assert!(matches!(
        store.create_entity(partner.data.clone(), "user:alice"),
        Err(MasterError::Exists { .. })
    ));

    let mut renamed = partner.data.clone();
    renamed.name = "Spedition Nord GmbH".into();
    let (updated, _) = store
        .replace_entity("P-2", renamed.clone(), partner.version, "user:bob")
        .unwrap();
    assert!(updated.version > partner.version);
    assert_eq!(updated.updated_by, "user:bob");
    let stale = store.replace_entity("P-2", renamed, partner.version, "user:carol");
    assert!(
        matches!(stale, Err(MasterError::VersionMismatch { current, .. }) if current == updated.version),
        "{stale:?}"
    );

    let dangling = store.create_entity(
        Contract {
            id: "K-9".into(),
            partner_id: "NOPE".into(),
            article_id: "A-WHEAT".into(),
            quantity_kg: None,
            valid_from: None,
            valid_to: None,
        },
        "user:alice",
    );
    assert!(matches!(dangling, Err(MasterError::Invalid(ref r)) if r.contains("unknown partner")));
    let site = store.get_entity::<Site>("HAFEN").unwrap().unwrap();
    let in_use = store.delete_entity::<Site>("HAFEN", site.version, "user:alice");
    assert!(
        matches!(in_use, Err(MasterError::InUse(ref r)) if r.contains("unknown site")),
        "{in_use:?}"
    );
    store
        .delete_entity::<Partner>("P-2", updated.version, "user:alice")
        .unwrap();
    assert!(store.get_entity::<Partner>("P-2").unwrap().is_none());
    let (page, total) = store
        .list_entities::<Partner>(Some("meyer"), 10, 0)
        .unwrap();
    assert_eq!((total, page[0].data.id.as_str()), (1, "P-1"));
    let (none, _) = store.list_entities::<Partner>(Some("%"), 10, 0).unwrap();
    assert!(none.is_empty(), "wildcards in q are taken literally");
}

#[test]
fn a_completed_ticket_books_stock_gets_one_delivery_note_and_a_cancellation_reverses_it() {
    let (_dir, store) = store();
    seed_master_data(&store);
    store
        .create_entity(
            Contract {
                id: "K-1".into(),
                partner_id: "P-1".into(),
                article_id: "A-WHEAT".into(),
                quantity_kg: Some(100_000.0),
                valid_from: None,
                valid_to: None,
            },
            "user:test",
        )
        .unwrap();
    let records = chain("box", 1, GENESIS_HASH, wheat_ticket(1, "OS-AB 1"));
    store.commit_batch(&batch("box", records.clone())).unwrap();

    let page = store
        .list_weighings(&WeighingFilter {
            partner_id: Some("P-1".into()),
            plate: Some("OS-A".into()),
            status: Some(WeighingStatus::Complete),
            limit: 10,
            ..WeighingFilter::default()
        })
        .unwrap();
    assert_eq!(page.total, 1);
    let id = page.items[0].id;
    let stock = store.stock(Some("A-WHEAT"), None).unwrap();
    assert_eq!(stock[0].quantity_kg, 25_020.0);
    assert_eq!(stock[0].location.as_ref().unwrap().id, "SILO-3");
    let contract = store.get_entity::<Contract>("K-1").unwrap().unwrap();
    assert_eq!(contract.delivered_kg, Some(25_020.0));

    let detail = store.get_weighing_detail(id).unwrap().unwrap();
    assert!(detail.proof.chain_verified, "{:?}", detail.proof.problems);
    assert_eq!(detail.proof.records.len(), 2);

    let note = store
        .create_delivery_note(
            &NewDeliveryNote {
                weighing_id: id,
                remarks: Some("Silo 3".into()),
            },
            "user:alice",
        )
        .unwrap();
    assert!(
        note.number.starts_with("LS-") && note.number.ends_with("-000001"),
        "{}",
        note.number
    );
    assert_eq!(
        (note.net, note.created_by.as_str()),
        (Some(25_020.0), "user:alice")
    );
    let twice = store.create_delivery_note(
        &NewDeliveryNote {
            weighing_id: id,
            remarks: None,
        },
        "user:alice",
    );
    assert!(matches!(twice, Err(NoteError::Conflict(_))), "{twice:?}");
    let listed = store.get_weighing(id).unwrap().unwrap();
    assert_eq!(listed.delivery_note.unwrap().number, note.number);
    store
        .cancel_delivery_note(
            note.id,
            &CancelDeliveryNote {
                reason: "falscher Kunde".into(),
            },
            "user:alice",
        )
        .unwrap();
    let again = store
        .create_delivery_note(
            &NewDeliveryNote {
                weighing_id: id,
                remarks: None,
            },
            "user:alice",
        )
        .unwrap();
    assert!(
        again.number.ends_with("-000002"),
        "numbers never repeat: {}",
        again.number
    );

    // The box cancels the ticket: stock is reversed, no new note possible.
    let cancel = Cancellation {
        ticket_no: 1,
        at: "2026-11-22T09:00:00.000Z".into(),
        operator: "Wiegemeister".into(),
        reason: "Fehlverwiegung".into(),
    };
    let more = chain(
        "box",
        3,
        &records[1].hash,
        vec![(KIND_CANCELLATION, serde_json::to_value(cancel).unwrap())],
    );
    store.commit_batch(&batch("box", more)).unwrap();
    assert_eq!(
        store.stock(Some("A-WHEAT"), None).unwrap()[0].quantity_kg,
        0.0
    );
    let (movements, total) = store
        .stock_movements(&MovementFilter {
            limit: 10,
            ..MovementFilter::default()
        })
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(movements[0].reason, "cancellation");
    let report = store.weighing_report(GroupBy::Article, None, None).unwrap();
    assert!(
        report.rows.is_empty(),
        "a cancelled weighing is in no report"
    );
    let voided = store.get_delivery_note(again.id).unwrap().unwrap();
    assert_eq!(voided.status, "cancelled", "its weighing no longer stands");
    assert!(
        voided
            .cancel_reason
            .unwrap()
            .contains("cancelled at the box"),
    );
    let detail = store.get_weighing_detail(id).unwrap().unwrap();
    assert_eq!(
        detail.proof.records.len(),
        3,
        "the cancellation is part of the proof"
    );
}

#[test]
fn reports_group_complete_weighings_and_corrections_need_known_articles() {
    let (_dir, store) = store();
    seed_master_data(&store);
    let mut payloads = wheat_ticket(1, "OS-AB 1");
    payloads.extend(wheat_ticket(2, "OS-CD 2"));
    store
        .commit_batch(&batch("box", chain("box", 1, GENESIS_HASH, payloads)))
        .unwrap();
    for group_by in [
        GroupBy::Article,
        GroupBy::Partner,
        GroupBy::Day,
        GroupBy::Site,
    ] {
        let report = store.weighing_report(group_by, None, None).unwrap();
        assert_eq!(report.total.weighings, 2, "{group_by:?}");
        assert_eq!(report.total.net_kg, 50_040.0, "{group_by:?}");
    }
    let by_article = store.weighing_report(GroupBy::Article, None, None).unwrap();
    assert_eq!(by_article.rows[0].name.as_deref(), Some("Weizen"));
    let later = store
        .weighing_report(GroupBy::Day, Some("2026-11-23T00:00:00.000Z"), None)
        .unwrap();
    assert_eq!(later.total.weighings, 0);

    let unknown = store.book_correction(
        &NewCorrection {
            article_id: "NOPE".into(),
            location_id: None,
            quantity_kg: 5.0,
            note: "Inventur".into(),
        },
        "user:alice",
    );
    assert!(
        matches!(unknown, Err(CorrectionError::Invalid(ref r)) if r.starts_with("article_id:"))
    );
    let zero = store.book_correction(
        &NewCorrection {
            article_id: "A-WHEAT".into(),
            location_id: None,
            quantity_kg: 0.0,
            note: "Inventur".into(),
        },
        "user:alice",
    );
    assert!(matches!(zero, Err(CorrectionError::Invalid(ref r)) if r.starts_with("quantity_kg:")));
    let booked = store
        .book_correction(
            &NewCorrection {
                article_id: "A-WHEAT".into(),
                location_id: Some("SILO-3".into()),
                quantity_kg: -40.0,
                note: "Schwund".into(),
            },
            "user:alice",
        )
        .unwrap();
    assert_eq!(booked.article.name, "Weizen");
    assert_eq!(
        store.stock(Some("A-WHEAT"), Some("SILO-3")).unwrap()[0].quantity_kg,
        50_000.0
    );
}
