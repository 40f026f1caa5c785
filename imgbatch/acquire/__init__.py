"""Getting the images: archives downloaded with wget, checked and extracted, then uploaded
gsutil-style to a bucket. Each stage resumes and verifies; nothing here decodes an image."""
