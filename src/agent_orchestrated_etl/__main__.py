from agent_orchestrated_etl.cli import main

main()
