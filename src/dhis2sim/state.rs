//! What the sim's DHIS2 has accepted: tracker objects (as posted, flattened), data values, and
//! soft-deleted UIDs. Saved as one JSON document (temp file, fsync, rename) so a restarted sim
//! keeps its data; the document has the same shape as `GET /__sim/objects`.

use super::SimError;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

/// The four tracker object kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    TrackedEntity,
    Enrollment,
    Event,
    Relationship,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::TrackedEntity,
        Kind::Enrollment,
        Kind::Event,
        Kind::Relationship,
    ];
    /// `trackerType` in reports.
    pub fn tracker_type(self) -> &'static str {
        match self {
            Kind::TrackedEntity => "TRACKED_ENTITY",
            Kind::Enrollment => "ENROLLMENT",
            Kind::Event => "EVENT",
            Kind::Relationship => "RELATIONSHIP",
        }
    }
    /// Payload array name.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::TrackedEntity => "trackedEntities",
            Kind::Enrollment => "enrollments",
            Kind::Event => "events",
            Kind::Relationship => "relationships",
        }
    }
    /// The object's own UID property.
    pub fn uid_field(self) -> &'static str {
        match self {
            Kind::TrackedEntity => "trackedEntity",
            Kind::Enrollment => "enrollment",
            Kind::Event => "event",
            Kind::Relationship => "relationship",
        }
    }
    /// Name used in error messages (`Event: `X`, already exists.`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::TrackedEntity => "TrackedEntity",
            Kind::Enrollment => "Enrollment",
            Kind::Event => "Event",
            Kind::Relationship => "Relationship",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub value: Value,
}

/// Natural key of an aggregate data value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DvKey {
    pub data_element: String,
    pub period: String,
    pub org_unit: String,
    pub coc: String,
    pub aoc: String,
}

#[derive(Debug, Default)]
pub struct Store {
    seq: u64,
    objects: HashMap<Kind, HashMap<String, Stored>>,
    deleted: HashMap<Kind, BTreeSet<String>>,
    data_values: HashMap<DvKey, Stored>,
}

impl Store {
    pub fn get(&self, kind: Kind, uid: &str) -> Option<&Value> {
        self.objects
            .get(&kind)
            .and_then(|m| m.get(uid))
            .map(|s| &s.value)
    }

    pub fn exists(&self, kind: Kind, uid: &str) -> bool {
        self.get(kind, uid).is_some()
    }

    pub fn is_deleted(&self, kind: Kind, uid: &str) -> bool {
        self.deleted.get(&kind).is_some_and(|s| s.contains(uid))
    }

    pub fn iter(&self, kind: Kind) -> impl Iterator<Item = &Value> {
        self.objects
            .get(&kind)
            .into_iter()
            .flat_map(|m| m.values().map(|s| &s.value))
    }

    /// Insert or replace (an update keeps its original position).
    pub fn put(&mut self, kind: Kind, uid: &str, value: Value) {
        self.seq += 1;
        let seq = self.seq;
        let map = self.objects.entry(kind).or_default();
        match map.get_mut(uid) {
            Some(s) => s.value = value,
            None => {
                map.insert(uid.to_string(), Stored { seq, value });
            }
        }
    }

    /// Soft delete; deleting a tracked entity or enrollment cascades to its children.
    pub fn delete(&mut self, kind: Kind, uid: &str) {
        if let Some(m) = self.objects.get_mut(&kind) {
            m.remove(uid);
        }
        self.deleted
            .entry(kind)
            .or_default()
            .insert(uid.to_string());
        let children: Vec<(Kind, String)> = match kind {
            Kind::TrackedEntity => self
                .children(Kind::Enrollment, "trackedEntity", uid)
                .into_iter()
                .map(|u| (Kind::Enrollment, u))
                .collect(),
            Kind::Enrollment => self
                .children(Kind::Event, "enrollment", uid)
                .into_iter()
                .map(|u| (Kind::Event, u))
                .collect(),
            _ => Vec::new(),
        };
        for (k, u) in children {
            self.delete(k, &u);
        }
    }

    fn children(&self, kind: Kind, field: &str, parent: &str) -> Vec<String> {
        self.objects
            .get(&kind)
            .map(|m| {
                m.iter()
                    .filter(|(_, s)| s.value.get(field).and_then(Value::as_str) == Some(parent))
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Admin soft delete of one event; false if it is not there.
    pub fn soft_delete_event(&mut self, uid: &str) -> bool {
        if self.exists(Kind::Event, uid) {
            self.delete(Kind::Event, uid);
            true
        } else {
            false
        }
    }

    pub fn data_value(&self, key: &DvKey) -> Option<&Value> {
        self.data_values.get(key).map(|s| &s.value)
    }

    pub fn put_data_value(&mut self, key: DvKey, value: Value) {
        self.seq += 1;
        let seq = self.seq;
        match self.data_values.get_mut(&key) {
            Some(s) => s.value = value,
            None => {
                self.data_values.insert(key, Stored { seq, value });
            }
        }
    }

    fn ordered<'a>(it: impl Iterator<Item = &'a Stored>) -> Vec<Value> {
        let mut v: Vec<&Stored> = it.collect();
        v.sort_by_key(|s| s.seq);
        v.into_iter().map(|s| s.value.clone()).collect()
    }

    /// The admin/persistence document.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for kind in Kind::ALL {
            let list = self
                .objects
                .get(&kind)
                .map(|m| Self::ordered(m.values()))
                .unwrap_or_default();
            out.insert(kind.plural().into(), Value::Array(list));
        }
        out.insert(
            "dataValues".into(),
            Value::Array(Self::ordered(self.data_values.values())),
        );
        let mut deleted = Map::new();
        for kind in Kind::ALL {
            let list: Vec<Value> = self
                .deleted
                .get(&kind)
                .map(|s| s.iter().map(|u| json!(u)).collect())
                .unwrap_or_default();
            deleted.insert(kind.plural().into(), Value::Array(list));
        }
        out.insert("deleted".into(), Value::Object(deleted));
        Value::Object(out)
    }

    /// Rebuild from [`Store::to_json`] output.
    pub fn from_json(doc: &Value) -> Result<Store, String> {
        let mut store = Store::default();
        for kind in Kind::ALL {
            let list = doc.get(kind.plural()).and_then(Value::as_array);
            for obj in list.into_iter().flatten() {
                let uid = obj
                    .get(kind.uid_field())
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("a {} without {}", kind.label(), kind.uid_field()))?;
                store.put(kind, uid, obj.clone());
            }
            let deleted = doc
                .get("deleted")
                .and_then(|d| d.get(kind.plural()))
                .and_then(Value::as_array);
            for uid in deleted.into_iter().flatten().filter_map(Value::as_str) {
                store
                    .deleted
                    .entry(kind)
                    .or_default()
                    .insert(uid.to_string());
            }
        }
        for dv in doc
            .get("dataValues")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| dv.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let key = DvKey {
                data_element: s("dataElement"),
                period: s("period"),
                org_unit: s("orgUnit"),
                coc: s("categoryOptionCombo"),
                aoc: s("attributeOptionCombo"),
            };
            store.put_data_value(key, dv.clone());
        }
        Ok(store)
    }

    pub fn load(path: &Path) -> Result<Store, SimError> {
        let err = |reason: String| SimError::StateFile {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let doc: Value = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                Store::from_json(&doc).map_err(err)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Write atomically: temp file beside the target, fsync, rename.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&self.to_json()).map_err(std::io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
