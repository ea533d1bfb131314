"""An Airflow DAG scoring each day's files with the production version of `digits`.

Airflow schedules the runs and retries them; shipyard runs each: the alias is resolved at each run
(the DAG follows deploys), the output is written part by part (a retry goes on where a failed try
stopped), and the job is recorded in the registry (`shipyard batch jobs`). The machine running the
task needs shipyard installed and the registry's settings (SHIPYARD_HOME or SHIPYARD_DATABASE_URL)
in its environment. Without Airflow, `shipyard batch schedule add` and `shipyard scheduler` do the
same: see the README, "Scheduled jobs".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="digits_batch",
    description="Score the day's digits with digits:production",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
) as dag:
    BashOperator(
        task_id="score",
        # {{ ds }} is the run's date: a folder of output per day, so each day's run is its own job
        bash_command=(
            "shipyard batch run digits:production "
            "--input '/data/{{ ds }}/*.parquet' --output /scored/{{ ds }}"
        ),
    )
