//! Reading NATS KV buckets.
//!
//! weir mirrors every KV bucket a stage is granted in its pipeline TOML
//! (`grants = { kv = ["shops"] }` on the stage) in memory, through a KV
//! watch. A read is therefore local and cheap enough to do per event, and an
//! update made with any NATS client (`nats kv put shops eu-1 '...'`) is seen
//! within about a second, without a reload.
//!
//! ```
//! use weir_sdk::{kv, testing};
//!
//! # testing::kv_put("shops", "eu-1", r#"{"country": "DE"}"#);
//! // With the bucket "shops" granted to the stage:
//! match kv::get("shops", "eu-1")? {
//!     Some(bytes) => assert_eq!(bytes, br#"{"country": "DE"}"#),
//!     None => { /* no such key, or it was deleted */ }
//! }
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! A bucket that was not granted to the stage, or of which weir has no copy
//! (`weir exec` runs without NATS), is an [`Error::invalid`]: a
//! configuration mistake, not a transient failure, so `?` dead-letters the
//! event with the reason.
//!
//! Within one call of [`Stage::process_batch`](crate::Stage::process_batch),
//! a key is read from weir once: later reads of it in the same batch get
//! the same value from the stage's own memory, without crossing the
//! sandbox again (that crossing costs about half a microsecond; tracking
//! events in a batch share a few shops and currencies). So a batch sees one
//! snapshot of every key it reads; the next batch sees updates.
//!
//! On `wasm32` these functions call weir's `host.kv-get` import. On any other
//! target (a native `cargo test`) they read a per-thread test store that
//! [`testing::kv_put`](crate::testing::kv_put) fills and
//! [`testing::kv_clear`](crate::testing::kv_clear) empties; a bucket nothing
//! was put into counts as not granted.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::de::DeserializeOwned;

use crate::Error;

/// Reads `key` from the KV bucket `bucket`.
///
/// `Ok(None)`: the key is absent, or was deleted. `Err`: an
/// [`Error::invalid`] saying that the bucket was not granted to this stage,
/// or that weir has no copy of it.
///
/// ```
/// use weir_sdk::{kv, testing};
///
/// testing::kv_put("shops", "eu-1", "Berlin");
/// assert_eq!(kv::get("shops", "eu-1").unwrap(), Some(b"Berlin".to_vec()));
/// assert_eq!(kv::get("shops", "us-9").unwrap(), None);
/// assert!(kv::get("secrets", "root").unwrap_err().is_invalid());
/// ```
pub fn get(bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::__private::bindings::weir::stage::host;
        if let Some(value) = BATCH_READS.with_borrow(|reads| reads.get(bucket).and_then(|keys| keys.get(key)).cloned()) {
            return Ok(value);
        }
        let value = host::kv_get(bucket, key).map_err(Error::invalid)?;
        BATCH_READS.with_borrow_mut(|reads| {
            let keys = match reads.get_mut(bucket) {
                Some(keys) => keys,
                None => reads.entry(bucket.to_owned()).or_default(),
            };
            keys.insert(key.to_owned(), value.clone());
        });
        Ok(value)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        TEST_STORE.with_borrow(|store| match store.get(bucket) {
            Some(entries) => Ok(entries.get(key).cloned()),
            None => Err(Error::invalid(format!(
                "kv bucket \"{bucket}\" is not granted to this stage \
                 (in a native test: nothing was put into it with testing::kv_put)"
            ))),
        })
    }
}

/// Reads `key` from the KV bucket `bucket` and parses the value as JSON.
///
/// Like [`get`]; in addition, a value that is not valid JSON, or not of the
/// shape `T`, is an [`Error::invalid`] naming the bucket and the key.
///
/// ```
/// use serde::Deserialize;
/// use weir_sdk::{kv, testing};
///
/// #[derive(Debug, Deserialize)]
/// struct Shop { country: String }
///
/// testing::kv_put("shops", "eu-1", r#"{"country": "DE"}"#);
/// testing::kv_put("shops", "broken", "{oops");
///
/// let shop: Option<Shop> = kv::get_json("shops", "eu-1").unwrap();
/// assert_eq!(shop.unwrap().country, "DE");
/// assert!(kv::get_json::<Shop>("shops", "none").unwrap().is_none());
/// let error = kv::get_json::<Shop>("shops", "broken").unwrap_err();
/// assert!(error.is_invalid());
/// assert!(error.message().starts_with("kv value shops/broken is not valid JSON: "));
/// ```
pub fn get_json<T: DeserializeOwned>(bucket: &str, key: &str) -> Result<Option<T>, Error> {
    let Some(bytes) = get(bucket, key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => Error::invalid(format!("kv value {bucket}/{key} does not match the expected shape: {error}")),
            Category::Syntax | Category::Eof | Category::Io => Error::invalid(format!("kv value {bucket}/{key} is not valid JSON: {error}")),
        }
    })
}

/// What the current batch has read: bucket -> key -> value.
#[cfg(target_arch = "wasm32")]
type BatchReads = HashMap<String, HashMap<String, Option<Vec<u8>>>>;

#[cfg(target_arch = "wasm32")]
thread_local! {
    static BATCH_READS: RefCell<BatchReads> = RefCell::new(HashMap::new());
}

/// Forgets what the previous batch read; called by `export_stage!` before
/// every batch.
pub(crate) fn begin_batch() {
    #[cfg(target_arch = "wasm32")]
    BATCH_READS.with_borrow_mut(|reads| reads.values_mut().for_each(HashMap::clear));
}

/// The buckets of the native test store: bucket -> key -> value.
type Store = HashMap<String, HashMap<String, Vec<u8>>>;

thread_local! {
    /// What [`get`] reads on a target other than `wasm32`.
    static TEST_STORE: RefCell<Store> = RefCell::new(HashMap::new());
}

/// Used by [`testing::kv_put`](crate::testing::kv_put).
pub(crate) fn test_put(bucket: &str, key: &str, value: Vec<u8>) {
    TEST_STORE.with_borrow_mut(|store| {
        store.entry(bucket.to_owned()).or_default().insert(key.to_owned(), value);
    });
}

/// Used by [`testing::kv_clear`](crate::testing::kv_clear).
pub(crate) fn test_clear() {
    TEST_STORE.with_borrow_mut(HashMap::clear);
}
