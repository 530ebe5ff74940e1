//! The compiled-in datatypes.

pub mod annotation;
pub mod imageblk;
pub mod imagetile;
pub mod keyvalue;
pub mod labelarray;
pub mod labelblk;
pub mod labelmap;
pub mod labelsz;
pub mod labelvol;
pub mod neuronjson;
pub mod roi;
pub mod tarsupervoxels;
pub mod volumeproxy;

use std::sync::Arc;

use crate::datatype::Datatype;

/// Every datatype this server knows, in the order `compiled-types` lists them.
pub fn all() -> Vec<Arc<dyn Datatype>> {
    let mut types: Vec<Arc<dyn Datatype>> = vec![
        Arc::new(keyvalue::KeyValueType),
        Arc::new(labelmap::LabelmapType),
        Arc::new(labelarray::LabelarrayType),
        Arc::new(labelblk::LabelblkType),
        Arc::new(labelvol::LabelvolType),
        Arc::new(tarsupervoxels::TarSupervoxelsType),
        Arc::new(roi::RoiType),
        Arc::new(annotation::AnnotationType),
    ];
    types.extend(
        imageblk::Kind::ALL
            .into_iter()
            .map(|k| Arc::new(imageblk::ImageblkType(k)) as Arc<dyn Datatype>),
    );
    types.push(Arc::new(imagetile::ImagetileType));
    types.push(Arc::new(neuronjson::NeuronJsonType));
    types.push(Arc::new(labelsz::LabelszType));
    types.push(Arc::new(volumeproxy::VolumeProxyType));
    types
}
