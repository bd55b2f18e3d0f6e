"""Queue benchmark: latency the queue adds to a job, and throughput with one and two workers."""
