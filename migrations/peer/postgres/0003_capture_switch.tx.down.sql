DROP TABLE IF EXISTS sync_lww_capture;
