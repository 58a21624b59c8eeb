"""Checks a DSFinV-K export directory with tools we did not write.

Usage: dsfinvk_check.py DIR

(a) pretix's `dsfinvk.validate.validate_dir`: its returned errors and anything
    it prints (it prints, rather than returns, malformed numbers and
    over-long texts) are problems.
(b) An independent check against pretix's field tables (`dsfinvk.models`):
    every table's file exists, is UTF-8, ends every record with CRLF, has
    the model's header, numbers with exactly the model's decimals and a
    decimal comma (no digit grouping), texts within their maximum length
    and regex, times in their format, and the DSFinV-K Anhang G mandatory
    columns filled.
(c) Consistency: the closing totals equal the sums of the single records,
    and every record belongs to a closing and a receipt that exist.

Prints `ok` and exits 0, or prints every problem and exits 1.
"""

import contextlib
import csv
import inspect
import io
import os
import re
import sys
from collections import defaultdict
from decimal import Decimal

from dsfinvk import models
from dsfinvk.fields import BooleanField, LocalDateTimeField, NumericField, StringField
from dsfinvk.table import Model
from dsfinvk.validate import validate_dir

# Anhang G "mandatory" columns beyond the closing key (Z_KASSE_ID,
# Z_ERSTELLUNG, Z_NR), which every table must fill. KUNDE_NAME/_ID/_TYP are
# "mandatory when known" and an anonymous cash sale knows none; the TSE
# columns of transactions_tse.csv may be empty when TSE_TA_FEHLER says why
# (TSE outage); STNR/USTID are one-of and checked separately.
MANDATORY = {
    "cashpointclosing.csv": ["TAXONOMIE_VERSION", "NAME", "STRASSE", "PLZ", "ORT", "LAND",
                             "Z_SE_ZAHLUNGEN", "Z_SE_BARZAHLUNGEN"],
    "location.csv": ["LOC_NAME", "LOC_STRASSE", "LOC_PLZ", "LOC_ORT", "LOC_LAND"],
    "cashregister.csv": ["KASSE_SERIENNR", "KASSE_BASISWAEH_CODE"],
    "slaves.csv": ["TERMINAL_ID", "TERMINAL_SERIENNR"],
    "pa.csv": ["AGENTUR_ID", "AGENTUR_NAME", "AGENTUR_STRASSE", "AGENTUR_PLZ", "AGENTUR_ORT",
               "AGENTUR_LAND"],
    "tse.csv": ["TSE_ID", "TSE_SERIAL", "TSE_SIG_ALGO", "TSE_ZEITFORMAT", "TSE_PD_ENCODING",
                "TSE_PUBLIC_KEY", "TSE_ZERTIFIKAT_I"],
    "vat.csv": ["UST_SCHLUESSEL", "UST_SATZ", "UST_BESCHR"],
    "businesscases.csv": ["GV_TYP", "UST_SCHLUESSEL", "Z_UMS_BRUTTO", "Z_UMS_NETTO", "Z_UST"],
    "payment.csv": ["ZAHLART_TYP", "Z_ZAHLART_BETRAG"],
    "cash_per_currency.csv": ["ZAHLART_WAEH", "ZAHLART_BETRAG_WAEH"],
    "transactions.csv": ["BON_ID", "BON_NR", "BON_TYP", "BON_START", "BON_ENDE", "BEDIENER_ID",
                         "UMS_BRUTTO"],
    "transactions_vat.csv": ["BON_ID", "UST_SCHLUESSEL", "BON_BRUTTO", "BON_NETTO", "BON_UST"],
    "datapayment.csv": ["BON_ID", "ZAHLART_TYP", "ZAHLWAEH_CODE", "BASISWAEH_BETRAG"],
    "lines.csv": ["BON_ID", "POS_ZEILE", "ARTIKELTEXT", "GV_TYP"],
    "lines_vat.csv": ["BON_ID", "POS_ZEILE", "UST_SCHLUESSEL"],
    "itemamounts.csv": ["BON_ID", "POS_ZEILE", "UST_SCHLUESSEL"],
    "subitems.csv": ["BON_ID", "POS_ZEILE", "ZI_ART_NR", "ZI_MENGE", "ZI_UST_SCHLUESSEL"],
    "allocation_groups.csv": ["BON_ID"],
    "references.csv": ["BON_ID", "REF_TYP", "REF_BON_ID"],
    "transactions_tse.csv": ["BON_ID", "TSE_TA_VORGANGSART"],
}
TSE_SIGNED = ["TSE_ID", "TSE_TANR", "TSE_TA_START", "TSE_TA_ENDE", "TSE_TA_SIGZ", "TSE_TA_SIG"]
CLOSING_KEY = ["Z_KASSE_ID", "Z_ERSTELLUNG", "Z_NR"]

LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
TSE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def table_models():
    """Every table class of pretix's models, in definition order."""
    return [cls for cls in vars(models).values()
            if inspect.isclass(cls) and issubclass(cls, Model) and cls is not Model
            and isinstance(cls._filename, str)]


def run_pretix(directory, problems):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            errors = validate_dir(directory)
        except Exception as e:  # pretix raises on what it cannot check
            errors = ["validate_dir raised {}: {}".format(type(e).__name__, e)]
    problems.extend("pretix: " + e for e in errors)
    problems.extend("pretix printed: " + line for line in printed.getvalue().splitlines()
                    if line.strip())


def number_pattern(places):
    return re.compile(r"^-?[0-9]+,[0-9]{%d}$" % places if places else r"^-?[0-9]+$")


def read_table(directory, model, problems):
    """The records of a model's file as dicts, or None if unreadable."""
    name = model._filename
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        problems.append("{}: missing".format(name))
        return None
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append("{}: not UTF-8: {}".format(name, e))
        return None
    if text.startswith("\ufeff"):
        problems.append("{}: starts with a BOM".format(name))
    if not text.endswith("\r\n"):
        problems.append("{}: the last record does not end with CRLF".format(name))
    bare = text.count("\n") - text.count("\r\n")
    lone_cr = text.count("\r") - text.count("\r\n")
    if bare or lone_cr:
        problems.append("{}: {} LF and {} CR outside CRLF record ends".format(name, bare, lone_cr))
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"'))
    fields = [f.name for f in model._fields]
    if not rows or rows[0] != fields:
        problems.append("{}: header is {} but the model has {}".format(
            name, rows[0] if rows else None, fields))
        return None
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(fields):
            problems.append("{} line {}: {} columns, the model has {}".format(
                name, line, len(row), len(fields)))
            continue
        record = dict(zip(fields, row))
        record["_line"] = line
        check_record(name, model, record, problems)
        records.append(record)
    return records


def check_record(name, model, record, problems):
    where = "{} line {}".format(name, record["_line"])
    for field in model._fields:
        value = record[field.name]
        what = "{}, {} {!r}".format(where, field.name, value)
        if value == "":
            continue
        if isinstance(field, NumericField):
            if not number_pattern(field.places).match(value):
                problems.append("{}: not a number with {} decimals and a decimal comma".format(
                    what, field.places))
        elif isinstance(field, BooleanField):
            if value not in ("0", "1"):
                problems.append("{}: not 0 or 1".format(what))
        elif isinstance(field, LocalDateTimeField):
            if not LOCAL_TIME.match(value):
                problems.append("{}: not YYYY-MM-DDThh:mm:ss".format(what))
        elif isinstance(field, StringField):
            if field.max_length is not None and len(value) > field.max_length:
                problems.append("{}: {} characters, at most {}".format(
                    what, len(value), field.max_length))
            if field.regex is not None and not field.regex.match(value):
                problems.append("{}: does not match {}".format(what, field.regex.pattern))
    for column in ("TSE_TA_START", "TSE_TA_ENDE"):
        if record.get(column) and not TSE_TIME.match(record[column]):
            problems.append("{}, {} {!r}: not YYYY-MM-DDThh:mm:ss.fffZ".format(
                where, column, record[column]))
    if record.get("Z_BUCHUNGSTAG") and not DAY.match(record["Z_BUCHUNGSTAG"]):
        problems.append("{}, Z_BUCHUNGSTAG {!r}: not YYYY-MM-DD".format(
            where, record["Z_BUCHUNGSTAG"]))
    required = CLOSING_KEY + MANDATORY.get(name, [])
    if name == "transactions_tse.csv" and not record["TSE_TA_FEHLER"]:
        required = required + TSE_SIGNED
    for column in required:
        if record[column] == "":
            problems.append("{}: mandatory {} is empty".format(where, column))
    if name == "cashpointclosing.csv" and not (record["STNR"] or record["USTID"]):
        problems.append("{}: neither STNR nor USTID is filled".format(where))


def amount(value):
    return Decimal(value.replace(",", ".")) if value else Decimal(0)


def closing_of(record):
    return tuple(record[c] for c in CLOSING_KEY)


def bon_of(record):
    return closing_of(record) + (record["BON_ID"],)


def compare(problems, what, expected, actual):
    """Reports every key whose sums differ, both ways."""
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key, Decimal(0)) != actual.get(key, Decimal(0)):
            problems.append("{} {}: {} but the single records add up to {}".format(
                what, key, actual.get(key, Decimal(0)), expected.get(key, Decimal(0))))


def check_consistency(t, problems):
    closings = {closing_of(r) for r in t["cashpointclosing.csv"]}
    for name, records in t.items():
        for r in records:
            if closing_of(r) not in closings:
                problems.append("{} line {}: closing {} is not in cashpointclosing.csv".format(
                    name, r["_line"], closing_of(r)))
    bons = {bon_of(r): r for r in t["transactions.csv"]}
    revenue = {b for b, r in bons.items() if r["BON_TYP"] == "Beleg"}
    for name in ("transactions_vat.csv", "datapayment.csv", "lines.csv", "lines_vat.csv",
                 "itemamounts.csv", "subitems.csv", "allocation_groups.csv", "references.csv",
                 "transactions_tse.csv"):
        for r in t[name]:
            if bon_of(r) not in bons:
                problems.append("{} line {}: BON_ID {} is not in transactions.csv".format(
                    name, r["_line"], r["BON_ID"]))

    # Single records: net + VAT = gross, and each receipt's parts add up to UMS_BRUTTO.
    for name, columns in (("transactions_vat.csv", ("BON_BRUTTO", "BON_NETTO", "BON_UST")),
                          ("lines_vat.csv", ("POS_BRUTTO", "POS_NETTO", "POS_UST")),
                          ("itemamounts.csv", ("PF_BRUTTO", "PF_NETTO", "PF_UST")),
                          ("businesscases.csv", ("Z_UMS_BRUTTO", "Z_UMS_NETTO", "Z_UST"))):
        for r in t[name]:
            gross, net, vat = (amount(r[c]) for c in columns)
            if net + vat != gross:
                problems.append("{} line {}: {} + {} = {}, not {} {}".format(
                    name, r["_line"], columns[1], columns[2], net + vat, columns[0], gross))
    for name, column in (("transactions_vat.csv", "BON_BRUTTO"),
                         ("datapayment.csv", "BASISWAEH_BETRAG"),
                         ("lines_vat.csv", "POS_BRUTTO")):
        sums = defaultdict(Decimal)
        for r in t[name]:
            sums[bon_of(r)] += amount(r[column])
        compare(problems, "transactions.csv UMS_BRUTTO of", sums,
                {b: amount(r["UMS_BRUTTO"]) for b, r in bons.items()
                 if b in sums or amount(r["UMS_BRUTTO"])})

    # Closing totals over the receipts of type Beleg.
    gv_of_line = {bon_of(r) + (r["POS_ZEILE"],): r["GV_TYP"] for r in t["lines.csv"]}
    for index, column in enumerate(("Z_UMS_BRUTTO", "Z_UMS_NETTO", "Z_UST")):
        from_lines = defaultdict(Decimal)
        for r in t["lines_vat.csv"]:
            if bon_of(r) in revenue:
                gv = gv_of_line.get(bon_of(r) + (r["POS_ZEILE"],), "?")
                key = closing_of(r) + (gv, r["UST_SCHLUESSEL"])
                from_lines[key] += amount(r[("POS_BRUTTO", "POS_NETTO", "POS_UST")[index]])
        totals = defaultdict(Decimal)
        for r in t["businesscases.csv"]:
            totals[closing_of(r) + (r["GV_TYP"], r["UST_SCHLUESSEL"])] += amount(r[column])
        compare(problems, "businesscases.csv " + column + " of", from_lines, totals)

    from_receipts = defaultdict(Decimal)
    cash = defaultdict(Decimal)
    for r in t["datapayment.csv"]:
        if bon_of(r) in revenue:
            from_receipts[closing_of(r) + (r["ZAHLART_TYP"],)] += amount(r["BASISWAEH_BETRAG"])
            if r["ZAHLART_TYP"] == "Bar":
                cash[closing_of(r)] += amount(r["BASISWAEH_BETRAG"])
    totals = defaultdict(Decimal)
    for r in t["payment.csv"]:
        totals[closing_of(r) + (r["ZAHLART_TYP"],)] += amount(r["Z_ZAHLART_BETRAG"])
    compare(problems, "payment.csv Z_ZAHLART_BETRAG of", from_receipts, totals)

    gross = defaultdict(Decimal)
    for b in revenue:
        gross[b[:3]] += amount(bons[b]["UMS_BRUTTO"])
    compare(problems, "cashpointclosing.csv Z_SE_ZAHLUNGEN of", gross,
            {closing_of(r): amount(r["Z_SE_ZAHLUNGEN"]) for r in t["cashpointclosing.csv"]})
    compare(problems, "cashpointclosing.csv Z_SE_BARZAHLUNGEN of", cash,
            {closing_of(r): amount(r["Z_SE_BARZAHLUNGEN"]) for r in t["cashpointclosing.csv"]})
    base = {closing_of(r): r["KASSE_BASISWAEH_CODE"] for r in t["cashregister.csv"]}
    compare(problems, "cash_per_currency.csv ZAHLART_BETRAG_WAEH of", cash,
            {closing_of(r): amount(r["ZAHLART_BETRAG_WAEH"]) for r in t["cash_per_currency.csv"]
             if r["ZAHLART_WAEH"] == base.get(closing_of(r))})

    for r in t["cashpointclosing.csv"]:
        ids = {b[3] for b in bons if b[:3] == closing_of(r)}
        start_end = (r["Z_START_ID"], r["Z_ENDE_ID"])
        if (ids and not set(start_end) <= ids) or (not ids and start_end != ("", "")):
            problems.append("cashpointclosing.csv line {}: Z_START_ID/Z_ENDE_ID {} are not "
                            "BON_IDs of the closing".format(r["_line"], start_end))

    tses = {closing_of(r) + (r["TSE_ID"],) for r in t["tse.csv"]}
    for r in t["transactions_tse.csv"]:
        if r["TSE_ID"] and closing_of(r) + (r["TSE_ID"],) not in tses:
            problems.append("transactions_tse.csv line {}: TSE_ID {} is not in tse.csv".format(
                r["_line"], r["TSE_ID"]))
    vat_keys = {closing_of(r) + (r["UST_SCHLUESSEL"],) for r in t["vat.csv"]}
    for name in ("lines_vat.csv", "transactions_vat.csv", "businesscases.csv"):
        for r in t[name]:
            if closing_of(r) + (r["UST_SCHLUESSEL"],) not in vat_keys:
                problems.append("{} line {}: UST_SCHLUESSEL {} is not in vat.csv".format(
                    name, r["_line"], r["UST_SCHLUESSEL"]))
    for r in t["references.csv"]:
        if r["REF_TYP"] == "Transaktion" and r["REF_Z_NR"]:
            target = (r["REF_Z_KASSE_ID"], r["REF_DATUM"], r["REF_Z_NR"], r["REF_BON_ID"])
            if target not in bons:
                problems.append("references.csv line {}: the referenced receipt {} is not in "
                                "transactions.csv".format(r["_line"], target))


def main(argv):
    if len(argv) != 2 or not os.path.isdir(argv[1]):
        print("usage: dsfinvk_check.py DIR (a DSFinV-K export directory)")
        return 2
    directory = argv[1]
    problems = []
    run_pretix(directory, problems)
    tables = {}
    for model in table_models():
        records = read_table(directory, model, problems)
        tables[model._filename] = records if records is not None else []
    if len(tables) != 20:
        problems.append("pretix's models have {} tables, DSFinV-K has 20".format(len(tables)))
    check_consistency(tables, problems)
    if problems:
        for problem in problems:
            print(problem)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
