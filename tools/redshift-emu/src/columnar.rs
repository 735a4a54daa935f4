//! `FORMAT AS PARQUET`: one Parquet file read with the `parquet` crate, row group by row group,
//! into text fields in file column order, which the usual per-column conversion then checks
//! against the table's columns by position.
//!
//! Redshift's rules ("COPY from columnar data formats",
//! https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html):
//! "COPY inserts values into the target table's columns in the same order as the columns occur
//! in the columnar data files. The number of columns in the target table and the number of
//! columns in the data file must match", and "If COPY encounters an error while loading, the
//! command fails". The failure is an XX000 `Spectrum Scan Error` whose DETAIL context names the
//! file as an HTTPS URL, as Redshift's does.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::Array;
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::formats::Fields;

/// Redshift Spectrum's code for a file that does not fit the table.
pub const SCHEMA_MISMATCH: i32 = 15007;
/// The code used for a file that cannot be read as Parquet.
pub const UNREADABLE: i32 = 15001;

/// Why a columnar file failed the COPY: the DETAIL's code and context.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanError {
    /// DETAIL `code:`.
    pub code: i32,
    /// DETAIL `context:`, naming the file.
    pub context: String,
}

/// The HTTPS form Redshift names a file in: `https://s3.<region>.amazonaws.com/<bucket>/<key>`.
pub fn https_url(region: &str, bucket: &str, key: &str) -> String {
    format!("https://s3.{region}.amazonaws.com/{bucket}/{key}")
}

/// Every row of the Parquet file `data` as text fields (None is NULL); `ncols` is the number of
/// target columns, `file` the file's HTTPS name for errors.
pub fn rows(data: Vec<u8>, ncols: usize, file: &str) -> Result<Vec<Fields>, ScanError> {
    let unreadable = |e: &dyn std::fmt::Display| ScanError {
        code: UNREADABLE,
        context: format!("File '{file}' is not a valid Parquet file: {e}"),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(data))
        .map_err(|e| unreadable(&e))?;
    let width = builder.schema().fields().len();
    if width != ncols {
        return Err(ScanError {
            code: SCHEMA_MISMATCH,
            context: format!(
                "Unmatched number of columns between table and file. Table columns: {ncols}, Data columns: {width}, File name: {file}"
            ),
        });
    }
    let reader = builder.build().map_err(|e| unreadable(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| unreadable(&e))?;
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut fields = Vec::with_capacity(width);
            for (c, col) in batch.columns().iter().enumerate() {
                let v = cell(col.as_ref(), row).map_err(|why| ScanError {
                    code: SCHEMA_MISMATCH,
                    context: format!(
                        "File '{file}' has an incompatible Parquet schema for column '{}': {why}",
                        schema.field(c).name()
                    ),
                })?;
                fields.push(v.map(String::into_bytes));
            }
            out.push(fields);
        }
    }
    Ok(out)
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        v.to_string()
    }
}

/// `unscaled / 10^scale` written out exactly.
fn decimal(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        return (unscaled * 10i128.pow(u32::from(scale.unsigned_abs()))).to_string();
    }
    let s = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{s:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

fn timestamp(v: i64, unit: &TimeUnit, tz: bool) -> Result<String, String> {
    let t = match unit {
        TimeUnit::Second => DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(v)),
    }
    .ok_or_else(|| format!("timestamp {v} out of range"))?;
    let s = t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    Ok(if tz { format!("{s}+00") } else { s })
}

/// One value as the text the column conversion reads.
fn cell(a: &dyn Array, i: usize) -> Result<Option<String>, String> {
    if a.is_null(i) {
        return Ok(None);
    }
    let v = match a.data_type() {
        DataType::Boolean => a.as_boolean().value(i).to_string(),
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i).to_string(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i).to_string(),
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i).to_string(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Float32 => float(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).to_string(),
        DataType::Utf8View => a.as_string_view().value(i).to_string(),
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(i);
            NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                .ok_or_else(|| format!("date {days} out of range"))?
                .format("%Y-%m-%d")
                .to_string()
        }
        DataType::Date64 => {
            let ms = a.as_primitive::<Date64Type>().value(i);
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| format!("date {ms} out of range"))?
                .format("%Y-%m-%d")
                .to_string()
        }
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(i),
            };
            timestamp(v, unit, tz.is_some())?
        }
        DataType::Decimal128(_, scale) => {
            decimal(a.as_primitive::<Decimal128Type>().value(i), *scale)
        }
        DataType::Dictionary(_, _) => {
            let d = a
                .as_any_dictionary_opt()
                .ok_or("unreadable dictionary column")?;
            let key = d.normalized_keys()[i];
            return cell(d.values().as_ref(), key);
        }
        other => {
            return Err(format!(
                "the emulator does not convert Parquet type {other}"
            ))
        }
    };
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        ArrayRef, BooleanArray, Decimal128Array, Int32Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    fn file(cols: Vec<(&str, ArrayRef)>) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        out
    }

    #[test]
    fn values_become_text_in_file_order() {
        let data = file(vec![
            (
                "id",
                Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            ("name", Arc::new(StringArray::from(vec!["a", "b"]))),
            ("ok", Arc::new(BooleanArray::from(vec![true, false]))),
            (
                "amount",
                Arc::new(
                    Decimal128Array::from(vec![12345, -5])
                        .with_precision_and_scale(8, 2)
                        .unwrap(),
                ),
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    1_700_000_000_000_001,
                    0,
                ])),
            ),
        ]);
        let rows = rows(data, 5, "https://s3.r.amazonaws.com/b/k").unwrap();
        let text = |r: &Fields| {
            r.iter()
                .map(|f| f.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(&rows[0]),
            vec![
                Some("1".into()),
                Some("a".into()),
                Some("true".into()),
                Some("123.45".into()),
                Some("2023-11-14 22:13:20.000001".into())
            ]
        );
        assert_eq!(text(&rows[1])[0], None);
        assert_eq!(text(&rows[1])[3].as_deref(), Some("-0.05"));
    }

    #[test]
    fn column_count_and_corruption_name_the_file() {
        let data = file(vec![(
            "id",
            Arc::new(Int32Array::from(vec![1])) as ArrayRef,
        )]);
        let e = rows(data.clone(), 2, "https://s3.r.amazonaws.com/b/k").unwrap_err();
        assert_eq!(e.code, SCHEMA_MISMATCH);
        assert!(
            e.context.contains(
                "Table columns: 2, Data columns: 1, File name: https://s3.r.amazonaws.com/b/k"
            ),
            "{}",
            e.context
        );
        let e = rows(b"not parquet at all".to_vec(), 1, "https://x/b/k").unwrap_err();
        assert_eq!(e.code, UNREADABLE);
        assert!(e
            .context
            .starts_with("File 'https://x/b/k' is not a valid Parquet file"));
        assert_eq!(decimal(5, 0), "5");
        assert_eq!(decimal(7, 3), "0.007");
    }
}
