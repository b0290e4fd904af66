"""Running a grid: preparing the run folder, the driver, one trial from data to row, the executors that
place trials in processes or on a Ray cluster, and what a trial leaves behind (saved models, maps)."""
