//! stageload: loads staged S3 objects into Redshift, Elasticsearch/OpenSearch and Splunk HEC.

pub mod codes;
pub mod source;
