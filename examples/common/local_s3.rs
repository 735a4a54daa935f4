//! Shared by the staging examples: an S3 client for the local stack's server, from the
//! environment `.stack/env` sets (`STAGELOAD_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`), with the bucket created if it is not there yet.

/// The client, and `bucket` created (an existing bucket is fine).
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
