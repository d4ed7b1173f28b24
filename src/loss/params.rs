//! Parsing of `key=value` loss parameters (the registry's and the CLI's format).

use crate::error::{Error, Result};
use crate::loss::Reduction;

/// Reads a loss's parameters, refusing names it does not take.
pub(crate) struct ParamReader<'a> {
    loss: &'static str,
    items: &'a [(String, String)],
}

impl<'a> ParamReader<'a> {
    pub(crate) fn new(
        loss: &'static str,
        known: &[&str],
        items: &'a [(String, String)],
    ) -> Result<Self> {
        for (k, _) in items {
            if !known.contains(&k.as_str()) {
                return Err(Error::UnknownParameter {
                    loss,
                    name: k.clone(),
                    known: known.join(", "),
                });
            }
        }
        Ok(ParamReader { loss, items })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        // The last occurrence wins, as on a command line.
        self.items
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn err(&self, key: &str, message: String) -> Error {
        Error::Parameter {
            loss: self.loss,
            name: key.to_string(),
            message,
        }
    }

    pub(crate) fn f32(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<f32>()
                .map_err(|_| self.err(key, format!("`{v}` is not a number"))),
        }
    }

    pub(crate) fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None | Some("none") => Ok(None),
            Some(_) => self.f32(key, 0.0).map(Some),
        }
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some("true" | "1" | "True") => Ok(true),
            Some("false" | "0" | "False") => Ok(false),
            Some(v) => Err(self.err(key, format!("`{v}` is not true or false"))),
        }
    }

    pub(crate) fn list(&self, key: &str) -> Result<Option<Vec<f32>>> {
        match self.get(key) {
            None | Some("none") => Ok(None),
            Some(v) => v
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f32>()
                        .map_err(|_| self.err(key, format!("`{x}` in `{v}` is not a number")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }

    pub(crate) fn ignore_index(&self, default: Option<i32>) -> Result<Option<i32>> {
        match self.get("ignore_index") {
            None => Ok(default),
            Some("none") => Ok(None),
            Some(v) => v.parse::<i32>().map(Some).map_err(|_| {
                self.err(
                    "ignore_index",
                    format!("`{v}` is not a 32-bit integer or none"),
                )
            }),
        }
    }

    pub(crate) fn parsed<T: std::str::FromStr<Err = String>>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<T>().map_err(|e| self.err(key, e)),
        }
    }

    pub(crate) fn parsed_opt<T: std::str::FromStr<Err = String>>(
        &self,
        key: &str,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| self.err(key, e)),
        }
    }

    pub(crate) fn reduction(&self) -> Result<Reduction> {
        self.parsed("reduction", Reduction::Mean)
    }
}
