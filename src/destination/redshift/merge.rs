//! Merge mode (`merge_keys`): the batch is copied into a temporary staging table, then replaces
//! the target's rows with the same keys, all inside the batch's transaction. This is the
//! staging-table pattern Redshift's documentation gives for an upsert ("create temp table stage
//! (like target); ... delete from target using stage where target.primarykey =
//! stage.primarykey; insert into target select * from stage"), with one more step: rows that
//! share a key inside one batch are reduced to one, so a producer's duplicates (Firehose and
//! Fluent Bit deliver at least once) do not reach the table.
//!
//! The SQL is rendered here by pure functions; the destination runs it.

use super::copy::{quote_ident, CopySpec};
use crate::config::RedshiftConfig;

/// The quoted names a merge needs beyond the COPY's table and columns.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSpec {
    /// Key columns, quoted.
    keys: Vec<String>,
    /// The column whose largest value wins among rows sharing a key, quoted.
    order_by: Option<String>,
}

/// The statements of one merge, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSql {
    /// `CREATE TEMP TABLE <stage> (LIKE <target>)`.
    pub create: String,
    /// The staging table the COPY loads.
    pub stage: String,
    /// `DELETE FROM <target> USING <stage> WHERE <keys match>`.
    pub delete: String,
    /// `INSERT INTO <target>` one row per key from the stage.
    pub insert: String,
    /// `DROP TABLE <stage>`.
    pub drop: String,
}

impl MergeSpec {
    /// The spec when `merge_keys` is set; configuration validation has checked that the keys
    /// and `merge_order_by` are among `columns`.
    pub fn from_config(c: &RedshiftConfig) -> Result<Option<MergeSpec>, String> {
        if c.merge_keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(MergeSpec {
            keys: c
                .merge_keys
                .iter()
                .map(|k| quote_ident(k))
                .collect::<Result<_, _>>()?,
            order_by: c.merge_order_by.as_deref().map(quote_ident).transpose()?,
        }))
    }

    /// The statements for one batch into `copy`'s table and columns; the staging table is named
    /// after the batch, so a retried batch in a reused session never meets another batch's table.
    pub fn render(&self, copy: &CopySpec, batch_id: i64) -> MergeSql {
        let stage = format!("\"stageload_stage_{batch_id}\"");
        let t = &copy.table;
        let matches = self
            .keys
            .iter()
            .map(|k| format!("{t}.{k} = {stage}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let cols = copy.columns.join(", ");
        let order = match &self.order_by {
            Some(c) => format!("{c} DESC"),
            None => self.keys.join(", "),
        };
        MergeSql {
            create: format!("CREATE TEMP TABLE {stage} (LIKE {t})"),
            delete: format!("DELETE FROM {t} USING {stage} WHERE {matches}"),
            insert: format!(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER \
                 (PARTITION BY {keys} ORDER BY {order}) AS stageload_rn FROM {stage}) AS s \
                 WHERE stageload_rn = 1",
                keys = self.keys.join(", ")
            ),
            drop: format!("DROP TABLE {stage}"),
            stage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &[&str], order_by: Option<&str>, columns: &[&str]) -> RedshiftConfig {
        let text = format!(
            "url = \"postgres://l@c:5439/dev\"\ntable = \"public.Events\"\niam_role = \"arn:x\"\n\
             columns = {columns:?}\nmerge_keys = {keys:?}\n{}",
            order_by.map_or(String::new(), |o| format!("merge_order_by = {o:?}"))
        );
        toml::from_str(&text).expect("redshift config")
    }

    #[test]
    fn the_statements_quote_every_name_and_keep_one_row_per_key() {
        let c = config(&["id", "Day"], Some("ts"), &["id", "day", "ts"]);
        let spec = MergeSpec::from_config(&c).unwrap().expect("merge on");
        let sql = spec.render(
            &CopySpec::from_config(&c, crate::source::framing::Framing::JsonLines).unwrap(),
            42,
        );
        assert_eq!(sql.stage, "\"stageload_stage_42\"");
        assert_eq!(
            sql.create,
            "CREATE TEMP TABLE \"stageload_stage_42\" (LIKE \"public\".\"events\")"
        );
        assert_eq!(
            sql.delete,
            "DELETE FROM \"public\".\"events\" USING \"stageload_stage_42\" WHERE \
             \"public\".\"events\".\"id\" = \"stageload_stage_42\".\"id\" AND \
             \"public\".\"events\".\"day\" = \"stageload_stage_42\".\"day\""
        );
        assert!(sql.insert.starts_with(
            "INSERT INTO \"public\".\"events\" (\"id\", \"day\", \"ts\") SELECT \"id\", \"day\", \"ts\" FROM"
        ));
        assert!(sql
            .insert
            .contains("PARTITION BY \"id\", \"day\" ORDER BY \"ts\" DESC"));
        assert!(sql.insert.ends_with("WHERE stageload_rn = 1"));
        assert_eq!(sql.drop, "DROP TABLE \"stageload_stage_42\"");
    }

    #[test]
    fn without_keys_there_is_no_merge() {
        assert_eq!(
            MergeSpec::from_config(&config(&[], None, &[])).unwrap(),
            None
        );
    }
}
