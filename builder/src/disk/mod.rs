//! Partition tables (MBR and GPT) of image files, bounded per-partition views, and growing
//! an image together with its last partition.
