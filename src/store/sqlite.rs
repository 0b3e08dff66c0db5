//! SQLite store. TODO(helper)
use super::*;
pub struct SqliteStore;
impl SqliteStore {
    pub fn open(_url: &str) -> Result<Self, StoreError> {
        todo!()
    }
}
impl Store for SqliteStore {
    fn last(&mut self, _target: &str, _region: &str) -> Result<Option<StateRow>, StoreError> {
        todo!()
    }
    fn insert(&mut self, _row: &NewState) -> Result<StateRow, StoreError> {
        todo!()
    }
    fn previous(&mut self, _row: &StateRow) -> Result<Option<StateRow>, StoreError> {
        todo!()
    }
    fn since(&mut self, _t: &str, _r: &str, _from: Timestamp) -> Result<Vec<StateRow>, StoreError> {
        todo!()
    }
}
