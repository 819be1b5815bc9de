//! What definitions and templates compile to, kept once per process: mappings,
//! transformations and filter rules (keyed by their definition's JSON text), and what
//! helpers compile from their arguments (date formats, regular expressions).
//!
//! Invariant: a key maps to what its text compiles to, so a cache hit is always right; the
//! cache is bounded (cleared past [`LIMIT`] entries) because helper arguments can come from
//! record data, and definitions are few enough that clearing costs a recompile at most.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Entries a cache holds before it starts over.
pub const LIMIT: usize = 1000;

/// Compiled values keyed by their source text.
pub struct CompiledCache<T> {
    compiled: RwLock<HashMap<String, Arc<T>>>,
}

impl<T> Default for CompiledCache<T> {
    fn default() -> Self {
        CompiledCache {
            compiled: RwLock::new(HashMap::new()),
        }
    }
}

impl<T> CompiledCache<T> {
    /// The value compiled from `key`, compiled by `compile` on first use.
    pub fn get(
        &self,
        key: &str,
        compile: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        if let Some(v) = self.compiled.read().unwrap().get(key) {
            return Ok(v.clone());
        }
        let v = Arc::new(compile()?);
        let mut map = self.compiled.write().unwrap();
        if map.len() >= LIMIT {
            map.clear();
        }
        map.insert(key.to_string(), v.clone());
        Ok(v)
    }

    /// How many entries are kept (for tests that check compiling happens once).
    pub fn len(&self) -> usize {
        self.compiled.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key a definition is cached under: its JSON text.
pub fn key_of<T: serde::Serialize>(definition: &T) -> String {
    serde_json::to_string(definition).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_once_and_stays_bounded() {
        let cache = CompiledCache::<usize>::default();
        let mut calls = 0;
        for _ in 0..3 {
            let v = cache.get("abc", || {
                calls += 1;
                Ok(3)
            });
            assert_eq!(*v.unwrap(), 3);
        }
        assert_eq!(calls, 1);
        assert!(cache.get("bad", || Err("no".into())).is_err());
        assert_eq!(cache.len(), 1, "a failed compile is not kept");
        for i in 0..LIMIT + 5 {
            cache.get(&i.to_string(), || Ok(i)).unwrap();
        }
        assert!(cache.len() <= LIMIT);
    }
}
