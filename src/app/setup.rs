//! What each core's state factory is given.

use serde::de::DeserializeOwned;

use super::client::Upstream;
use super::groups::Groups;
use super::BoxError;
use crate::config::Config;
use crate::engine::{Hub, Outbound};

/// What one core's factory is given.
#[derive(Debug)]
#[non_exhaustive]
pub struct Setup<'a> {
    /// The CPU this core runs on.
    pub cpu: usize,
    /// Its position among the server's cores, from 0.
    pub index: usize,
    /// The server's configuration.
    pub config: &'a Config,
    /// Where the core's tasks call its upstreams (none outside a server).
    door: Option<&'a Outbound>,
    /// Where its tasks reach its WebSockets (none outside a server).
    hub: Option<&'a Hub>,
}

impl<'a> Setup<'a> {
    /// What the first core (index 0, on CPU 0) is given under `config`: to call a factory
    /// outside a server, in a test. Set `cpu` and `index` to stand for another core.
    pub fn new(config: &'a Config) -> Setup<'a> {
        Setup {
            cpu: 0,
            index: 0,
            config,
            door: None,
            hub: None,
        }
    }

    /// What a core's factory is given on that core.
    pub(crate) fn on_core(
        cpu: usize,
        index: usize,
        config: &'a Config,
        door: &'a Outbound,
        hub: &'a Hub,
    ) -> Self {
        Setup {
            cpu,
            index,
            config,
            door: Some(door),
            hub: Some(hub),
        }
    }

    /// This core's WebSocket groups, to publish to from its handlers and tasks (keep it in
    /// the core's state). Outside a server (a setup made by [`Setup::new`]), publishing
    /// reaches no one.
    pub fn groups(&self) -> Groups {
        Groups::new(self.hub.cloned().unwrap_or_else(Hub::detached))
    }

    /// The `[[upstream]]` named `name`, for this core's handlers to call (see
    /// [`Upstream`]). An error if the configuration has no such upstream, or outside a
    /// server (a setup made by [`Setup::new`]).
    pub fn upstream(&self, name: &str) -> Result<Upstream, BoxError> {
        let door = self
            .door
            .ok_or("upstreams are called only from a server's cores")?;
        let index = door
            .find(name)
            .ok_or_else(|| format!("no [[upstream]] named {name:?} in the configuration"))?;
        Ok(Upstream::new(door.clone(), index))
    }

    /// The `[app]` table of the configuration file, read as `T`.
    ///
    /// ```
    /// # use percore::{Config, Setup};
    /// #[derive(serde::Deserialize)]
    /// struct Settings { greeting: String }
    ///
    /// let config = Config::from_toml("[app]\ngreeting = \"Hello\"\n", "test").unwrap();
    /// let setup = Setup::new(&config);
    /// assert_eq!(setup.settings::<Settings>().unwrap().greeting, "Hello");
    /// ```
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, BoxError> {
        let table = toml::Value::Table(self.config.app.clone());
        T::deserialize(table).map_err(|e| format!("[app]: {e}").into())
    }
}
