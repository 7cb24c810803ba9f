//! The columns of each table and the check of a file's schema against them.

use super::{ITEMS, TABLE_KEY, TEST, TRAIN, USERS};
use crate::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use crate::{Error, Result};
use std::sync::Arc;

pub(super) fn u32_field(name: &str) -> Field {
    Field::new(name, DataType::UInt32, false)
}

pub(super) fn table_schema(table: &str, with_time: bool) -> SchemaRef {
    let mut fields = match table {
        TRAIN | TEST => vec![u32_field("user"), u32_field("item")],
        USERS => vec![
            u32_field("user"),
            Field::new("raw_id", DataType::Utf8, false),
        ],
        ITEMS => vec![
            u32_field("item"),
            Field::new("raw_id", DataType::Utf8, false),
            Field::new("title", DataType::Utf8, true),
        ],
        _ => vec![u32_field("user"), u32_field("item")],
    };
    if with_time && (table == TRAIN || table == TEST) {
        fields.push(Field::new("timestamp", DataType::Int64, false));
    }
    Arc::new(Schema::new_with_metadata(fields, [(TABLE_KEY, table)]))
}

/// Check a table's schema (names and types of its columns, its `ncf.table` tag); returns whether
/// it has a timestamp column.
pub(super) fn check_schema(table: &str, schema: &Schema, loc: &str) -> Result<bool> {
    if let Some(tag) = schema.metadata.get(TABLE_KEY) {
        if tag != table {
            return Err(Error::parse(
                loc,
                format!("holds table `{tag}`, expected `{table}`"),
            ));
        }
    }
    let has_time = schema.fields().iter().any(|f| f.name() == "timestamp");
    let expect = table_schema(table, has_time);
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
    };
    if names(schema) != names(&expect) {
        return Err(Error::parse(
            loc,
            format!(
                "columns [{}], expected [{}]",
                names(schema).join(", "),
                names(&expect).join(", ")
            ),
        ));
    }
    Ok(has_time)
}
