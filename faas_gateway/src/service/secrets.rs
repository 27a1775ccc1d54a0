//! Secrets by namespace and name: the `/system/secrets` API, and the check that the secrets a
//! deployment names exist.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;

use super::Service;
use crate::api::{self, Secret};
use crate::error::{GatewayError, GatewayResult};

/// The stored secrets, keyed by `(namespace, name)`.
#[derive(Default)]
pub(super) struct SecretStore(Mutex<BTreeMap<(String, String), Secret>>);

impl SecretStore {
    /// The first of `names` not stored in `namespace`.
    pub(super) fn first_missing<'a>(
        &self,
        namespace: &str,
        names: &'a [String],
    ) -> Option<&'a String> {
        let secrets = self.0.lock();
        names
            .iter()
            .find(|s| !secrets.contains_key(&(namespace.to_string(), (*s).clone())))
    }

    /// Adds the namespaces that hold a secret to `set`.
    pub(super) fn add_namespaces(&self, set: &mut BTreeSet<String>) {
        set.extend(self.0.lock().keys().map(|(ns, _)| ns.clone()));
    }
}

impl Service {
    /// The secrets of `namespace` (the default one when none), names and namespaces only.
    pub fn list_secrets(&self, namespace: Option<&str>) -> Vec<Secret> {
        let ns = api::namespace_or_default(namespace);
        let secrets = self.inner.secrets.0.lock();
        secrets
            .values()
            .filter(|s| s.namespace.as_deref() == Some(ns))
            .map(|s| Secret {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                value: None,
                raw_value: None,
            })
            .collect()
    }

    /// Create (`update == false`, 409 if it exists) or update (404 if it does not).
    pub fn put_secret(&self, mut s: Secret, update: bool) -> GatewayResult<()> {
        if !api::is_valid_name(&s.name) {
            return Err(GatewayError::BadRequest(format!(
                "name: {:?} is not a valid secret name",
                s.name
            )));
        }
        let ns = api::namespace_or_default(s.namespace.as_deref()).to_string();
        s.namespace = Some(ns.clone());
        let mut secrets = self.inner.secrets.0.lock();
        let key = (ns, s.name.clone());
        match (secrets.contains_key(&key), update) {
            (true, false) => Err(GatewayError::SecretExists(s.name)),
            (false, true) => Err(GatewayError::SecretNotFound(s.name)),
            _ => {
                secrets.insert(key, s);
                Ok(())
            }
        }
    }

    pub fn delete_secret(&self, name: &str, namespace: Option<&str>) -> GatewayResult<()> {
        let ns = api::namespace_or_default(namespace);
        self.inner
            .secrets
            .0
            .lock()
            .remove(&(ns.to_string(), name.to_string()))
            .map(|_| ())
            .ok_or_else(|| GatewayError::SecretNotFound(name.to_string()))
    }
}
