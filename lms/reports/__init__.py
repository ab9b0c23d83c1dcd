"""Reports: HR's training dashboard, the completion report and its downloads, the
risk-control training KPI for performance appraisal, and the department × period
performance report. Read side only: nothing here writes to the database."""
