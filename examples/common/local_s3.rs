//! Shared by the staging examples: an S3 client for the local stack's server, from the
//! environment `.stack/env` sets (`STAGELOAD_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`), with the bucket created if it is not there yet; and the config
//! file's `[control]` and `[s3]` tables for a daemon run against the same stack.

/// The client, and `bucket` created (an existing bucket is fine).
#[allow(dead_code)] // Not every example that shares this file stages objects itself.
pub async fn client(bucket: &str) -> anyhow::Result<aws_sdk_s3::Client> {
    let creds = aws_sdk_s3::config::Credentials::new(
        std::env::var("AWS_ACCESS_KEY_ID")?,
        std::env::var("AWS_SECRET_ACCESS_KEY")?,
        None,
        None,
        "env",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(std::env::var("STAGELOAD_S3_ENDPOINT")?)
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    // Already there is the usual case; a real failure shows on the first PUT.
    let _ = s3.create_bucket().bucket(bucket).send().await;
    Ok(s3)
}

/// The `[control]` table for `database_url` and the `[s3]` table for the local stack's S3
/// server, the credentials left as `${VAR}`s the daemon expands from the environment.
#[allow(dead_code)] // Not every example that shares this file runs a daemon.
pub fn config_head(database_url: &str) -> String {
    format!(
        r#"[control]
database_url = "{database_url}"
pool_size = 4
[s3]
region = "us-east-1"
endpoint = "${{STAGELOAD_S3_ENDPOINT}}"
force_path_style = true
access_key_id = "${{AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"
"#
    )
}
