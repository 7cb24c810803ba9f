//! Parquet columns read as what a ratings table needs, for the types such tables hold: ids as
//! non-negative integers or as text, timestamps as seconds, ratings as floats. Integers of any
//! width and signedness, floats, decimals, strings, timestamps of any unit and dictionaries of
//! these are read; anything else, a value out of range or text that is no number is an error
//! naming the value (never a silent null).

use crate::arrow::array::{Array, ArrayRef, AsArray};
use crate::arrow::datatypes::*;

/// A column's values as `i64` (integers; integral floats; decimals of scale 0; numeric text;
/// timestamps as their raw count of units).
pub(super) fn as_i64(a: &dyn Array) -> Result<Vec<i64>, String> {
    macro_rules! ints {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| i64::try_from(v).map_err(|_| format!("value {v} out of range")))
                .collect()
        };
    }
    macro_rules! floats {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| {
                    let f = f64::from(v);
                    if f.fract() == 0.0 && f.abs() < 9.0e18 {
                        Ok(f as i64)
                    } else {
                        Err(format!("value {f} is not an integer"))
                    }
                })
                .collect()
        };
    }
    match a.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Float32 => floats!(Float32Type),
        DataType::Float64 => floats!(Float64Type),
        DataType::Timestamp(TimeUnit::Second, _) => ints!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ints!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ints!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => ints!(TimestampNanosecondType),
        DataType::Decimal128(_, 0) => ints!(Decimal128Type),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => as_strings(a)?
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("text {s:?} is not an integer"))
            })
            .collect(),
        DataType::Dictionary(..) => dictionary(a, as_i64),
        t => Err(format!("type {t} cannot be read as integers")),
    }
}

/// A column of integer ids as `u64`, the range of text ids (`0` to `2^64 - 1`): unsigned
/// integers of any width whole, signed ones and integral floats when not negative, decimals of
/// scale 0 and numeric text in that range.
pub(super) fn as_ids(a: &dyn Array) -> Result<Vec<u64>, String> {
    let range = |v: &dyn std::fmt::Display| {
        format!("id {v} out of range (integer ids are 0 to {})", u64::MAX)
    };
    macro_rules! unsigned {
        ($t:ty) => {
            Ok(a.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| v as u64)
                .collect())
        };
    }
    macro_rules! signed {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| u64::try_from(v).map_err(|_| range(&v)))
                .collect()
        };
    }
    match a.data_type() {
        DataType::UInt8 => unsigned!(UInt8Type),
        DataType::UInt16 => unsigned!(UInt16Type),
        DataType::UInt32 => unsigned!(UInt32Type),
        DataType::UInt64 => unsigned!(UInt64Type),
        DataType::Int8 => signed!(Int8Type),
        DataType::Int16 => signed!(Int16Type),
        DataType::Int32 => signed!(Int32Type),
        DataType::Int64 => signed!(Int64Type),
        DataType::Decimal128(_, 0) => signed!(Decimal128Type),
        DataType::Float32 | DataType::Float64 => as_f64(a)?
            .into_iter()
            .map(|f| match f.fract() == 0.0 && (0.0..1.8e19).contains(&f) {
                true => Ok(f as u64),
                false => Err(format!("value {f} is not an integer id")),
            })
            .collect(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => as_strings(a)?
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("text {s:?} is not an integer id"))
            })
            .collect(),
        DataType::Dictionary(..) => dictionary(a, as_ids),
        t => Err(format!("type {t} cannot be read as integer ids")),
    }
}

/// Whether a column holds text (strings, or a dictionary of strings as pandas writes a
/// categorical column): its ids are read as text, whatever --text-ids says.
pub(super) fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

/// A float column's values as `f64`.
fn as_f64(a: &dyn Array) -> Result<Vec<f64>, String> {
    match a.data_type() {
        DataType::Float32 => Ok(a
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|&v| v as f64)
            .collect()),
        DataType::Float64 => Ok(a.as_primitive::<Float64Type>().values().to_vec()),
        t => Err(format!("type {t} is not a float")),
    }
}

/// A timestamp column in whole seconds since the epoch (finer units truncated toward zero, as
/// Arrow casts); integer columns are taken as seconds already.
pub(super) fn as_seconds(a: &dyn Array) -> Result<Vec<i64>, String> {
    let per = match a.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1_000_000_000,
        _ => 1,
    };
    Ok(as_i64(a)?.into_iter().map(|v| v / per).collect())
}

/// A column's values as `f32` (numbers of any type; numeric text).
pub(super) fn as_f32(a: &dyn Array) -> Result<Vec<f32>, String> {
    macro_rules! nums {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| Ok(v as f32))
                .collect()
        };
    }
    match a.data_type() {
        DataType::Int8 => nums!(Int8Type),
        DataType::Int16 => nums!(Int16Type),
        DataType::Int32 => nums!(Int32Type),
        DataType::Int64 => nums!(Int64Type),
        DataType::UInt8 => nums!(UInt8Type),
        DataType::UInt16 => nums!(UInt16Type),
        DataType::UInt32 => nums!(UInt32Type),
        DataType::UInt64 => nums!(UInt64Type),
        DataType::Float16 => a
            .as_primitive::<Float16Type>()
            .values()
            .iter()
            .map(|v| Ok(v.to_f32()))
            .collect(),
        DataType::Float32 => Ok(a.as_primitive::<Float32Type>().values().to_vec()),
        DataType::Float64 => nums!(Float64Type),
        DataType::Decimal128(_, scale) => {
            let div = 10f64.powi(*scale as i32);
            a.as_primitive::<Decimal128Type>()
                .values()
                .iter()
                .map(|&v| Ok((v as f64 / div) as f32))
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => as_strings(a)?
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<f32>()
                    .map_err(|_| format!("text {s:?} is not a number"))
            })
            .collect(),
        DataType::Dictionary(..) => dictionary(a, as_f32),
        t => Err(format!("type {t} cannot be read as numbers")),
    }
}

/// A column's values as text (integers in decimal, as Arrow casts them).
pub(super) fn as_strings(a: &dyn Array) -> Result<Vec<String>, String> {
    match a.data_type() {
        DataType::Utf8 => Ok(a.as_string::<i32>().iter().map(text).collect()),
        DataType::LargeUtf8 => Ok(a.as_string::<i64>().iter().map(text).collect()),
        DataType::Utf8View => Ok(a.as_string_view().iter().map(text).collect()),
        DataType::Dictionary(..) => dictionary(a, as_strings),
        DataType::Float32 | DataType::Float64 => {
            Err(format!("type {} cannot be read as ids", a.data_type()))
        }
        _ => Ok(as_i64(a)?.into_iter().map(|v| v.to_string()).collect()),
    }
}

fn text(v: Option<&str>) -> String {
    v.unwrap_or_default().to_string()
}

/// A dictionary column through `read` of its values.
fn dictionary<T: Clone>(
    a: &dyn Array,
    read: fn(&dyn Array) -> Result<Vec<T>, String>,
) -> Result<Vec<T>, String> {
    let d = a
        .as_any_dictionary_opt()
        .ok_or_else(|| format!("type {} is not a readable dictionary", a.data_type()))?;
    let values: ArrayRef = d.values().clone();
    let values = read(values.as_ref())?;
    d.normalized_keys()
        .into_iter()
        .map(|k| {
            values
                .get(k)
                .cloned()
                .ok_or_else(|| format!("dictionary key {k} out of range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow::array::*;
    use std::sync::Arc;

    #[test]
    fn ids_times_and_ratings_from_the_usual_types() {
        let u: ArrayRef = Arc::new(UInt32Array::from(vec![1, 7, 4_000_000_000]));
        assert_eq!(as_i64(&u).unwrap(), [1, 7, 4_000_000_000]);
        assert_eq!(as_strings(&u).unwrap(), ["1", "7", "4000000000"]);
        let big: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX]));
        assert!(as_i64(&big).unwrap_err().contains("out of range"));
        let f: ArrayRef = Arc::new(Float64Array::from(vec![3.0, 2.5]));
        assert!(as_i64(&f).unwrap_err().contains("not an integer"));
        assert_eq!(as_f32(&f).unwrap(), [3.0, 2.5]);
        let s: ArrayRef = Arc::new(StringArray::from(vec!["12", " 5 "]));
        assert_eq!(as_i64(&s).unwrap(), [12, 5]);
        assert_eq!(as_strings(&s).unwrap(), ["12", " 5 "]);
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        assert!(as_f32(&bad).unwrap_err().contains("\"x\""));
        let ms: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![1_500, -1_500]));
        assert_eq!(as_seconds(&ms).unwrap(), [1, -1]);
        let d: ArrayRef = Arc::new(
            vec!["a", "b", "a"]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        );
        assert_eq!(as_strings(&d).unwrap(), ["a", "b", "a"]);
        assert!(is_text(d.data_type()) && is_text(s.data_type()) && !is_text(u.data_type()));
        assert_eq!(as_ids(&big).unwrap(), [u64::MAX]);
        let neg: ArrayRef = Arc::new(Int64Array::from(vec![3, -3]));
        assert!(as_ids(&neg).unwrap_err().contains("id -3 out of range"));
        let f2: ArrayRef = Arc::new(Float32Array::from(vec![2.0]));
        assert_eq!(as_ids(&f2).unwrap(), [2]);
        let dec: ArrayRef = Arc::new(
            Decimal128Array::from(vec![45, 30])
                .with_precision_and_scale(3, 1)
                .unwrap(),
        );
        assert_eq!(as_f32(&dec).unwrap(), [4.5, 3.0]);
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![true]));
        assert!(as_i64(&b).is_err());
    }
}
