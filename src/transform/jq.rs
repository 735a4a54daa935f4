//! `type = "jq"`: a jq program compiled once (the jq dialect of the `jaq` crates, which
//! Firehose's dynamic partitioning also uses) and run on each record.

use crate::config::transform::{compile_jq, JqFilter};
use jaq_core::data::JustLut;
use jaq_core::{unwrap_valr, Ctx, Vars};
use jaq_json::Val;

/// A compiled program.
pub struct Program {
    filter: JqFilter,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("jq::Program")
    }
}

impl Program {
    /// Compiles `program` with jq's standard library.
    pub fn compile(program: &str) -> Result<Program, String> {
        compile_jq(program).map(|filter| Program { filter })
    }

    /// Appends the program's outputs for `input` to `out`; the first runtime error ends it.
    pub fn run(&self, input: Val, out: &mut Vec<Val>) -> Result<(), String> {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        for v in self.filter.id.run((ctx, input)).map(unwrap_valr) {
            out.push(v.map_err(|e| e.to_string())?);
        }
        Ok(())
    }
}
