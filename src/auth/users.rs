//! The users file (SPEC §4): usernames, password hashes, roles, `disabled`.
//! Reloaded when it changes on disk (checked every [`WATCH_EVERY`]) and on
//! SIGHUP; a file that fails to load keeps the users already loaded, and
//! says why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::password::PasswordHash;

/// How often the users file's modification time is checked.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUsers {
    #[serde(default)]
    users: Vec<FileUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    username: String,
    password_hash: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    pub hash: PasswordHash,
    pub roles: Vec<String>,
    pub disabled: bool,
}

/// Users by name.
pub type Users = HashMap<String, User>;

/// Parses users-file text; errors name the entry and field.
pub fn parse(path: &Path, text: &str) -> Result<Users, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    let file: FileUsers = serde_path_to_error::deserialize(de)
        .map_err(|e| format!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
    let mut users = HashMap::with_capacity(file.users.len());
    for (i, u) in file.users.into_iter().enumerate() {
        let at = format!("{}: users[{i}]", path.display());
        if u.username.is_empty() || !crate::text::is_header_safe(&u.username) {
            return Err(format!(
                "{at}.username: must be non-empty, without commas or control characters"
            ));
        }
        if let Some(role) = u.roles.iter().find(|r| !crate::text::is_header_safe(r)) {
            return Err(format!(
                "{at}.roles: {role:?} has a comma or control character"
            ));
        }
        let hash = PasswordHash::parse(&u.password_hash)
            .map_err(|e| format!("{at}.password_hash: {e}"))?;
        if users.contains_key(&u.username) {
            return Err(format!("{at}.username: duplicate {:?}", u.username));
        }
        users.insert(
            u.username,
            User {
                hash,
                roles: u.roles,
                disabled: u.disabled,
            },
        );
    }
    Ok(users)
}

/// The users file and its current contents.
pub struct UsersFile {
    path: PathBuf,
    users: ArcSwap<Users>,
    modified: Mutex<Option<SystemTime>>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl UsersFile {
    /// Loads the file; a missing file means no users (login always fails).
    pub fn load(path: &Path) -> Result<Arc<Self>, String> {
        let users = if path.exists() {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            parse(path, &text)?
        } else {
            tracing::warn!(file = %path.display(), "users file not found: nobody can log in");
            Users::new()
        };
        Ok(Arc::new(UsersFile {
            path: path.to_owned(),
            users: ArcSwap::from_pointee(users),
            modified: Mutex::new(modified(path)),
        }))
    }

    pub fn get(&self, name: &str) -> Option<User> {
        self.users.load().get(name).cloned()
    }

    /// The hash an unknown user's password is checked against: an existing
    /// user's (chosen by the name), so that a login for a name that does not
    /// exist costs what a real one costs, whatever hash formats the file uses.
    pub fn stand_in(&self, name: &str) -> Option<PasswordHash> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let users = self.users.load();
        if users.is_empty() {
            return None;
        }
        let pick = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(name);
        users
            .values()
            .nth((pick % users.len() as u64) as usize)
            .map(|u| u.hash.clone())
    }

    pub fn len(&self) -> usize {
        self.users.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reloads the file if it changed since it was last read.
    pub fn reload_if_changed(&self) {
        let now = modified(&self.path);
        {
            let Ok(mut last) = self.modified.lock() else {
                return;
            };
            if *last == now {
                return;
            }
            *last = now;
        }
        let loaded = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))
            .and_then(|text| parse(&self.path, &text));
        match loaded {
            Ok(users) => {
                tracing::info!(file = %self.path.display(), users = users.len(), "users file reloaded");
                self.users.store(Arc::new(users));
            }
            Err(e) => {
                tracing::error!(error = %e, "users file reload failed; keeping the users already loaded")
            }
        }
    }

    /// Watches the file while this config generation is alive.
    pub fn watch(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(file) = weak.upgrade() else { return };
                file.reload_if_changed();
            }
        });
    }
}
