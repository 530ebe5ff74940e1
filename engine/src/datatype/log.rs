//! The mutation-log endpoints every datatype with a log serves: `GET mutations` and
//! `GET mutations-range`.

use super::{DataCtx, DataRequest, DataResponse};
use crate::mutation::log::records_json;
use crate::{Error, Result};

/// `GET mutations[?userid=]`: the version's records.
pub fn get_mutations(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let records = ctx.mutations()?;
    let userid = req.query.get("userid").filter(|u| !u.is_empty());
    Ok(DataResponse::bytes(
        "application/json",
        records_json(&records, userid)?,
    ))
}

/// `GET mutations-range/<begin>/<end>`: the records of every version from begin to end.
pub fn get_mutations_range(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let (begin, end) = match req.path.as_slice() {
        [b, e] | [b, e, _] if req.path.get(2).is_none_or(|s| s.is_empty()) => (b, e),
        _ => {
            return Err(Error::bad(
                "expected beginning and end UUIDs after \"mutations-range/\"",
            ));
        }
    };
    let records = ctx.mutations_range(begin, end)?;
    let userid = req.query.get("userid").filter(|u| !u.is_empty());
    Ok(DataResponse::bytes(
        "application/json",
        records_json(&records, userid)?,
    ))
}
