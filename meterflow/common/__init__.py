"""What every stage uses: storage (local folder, GCS, S3), errors, HTTP, time."""
